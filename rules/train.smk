# stage: train (being written)
