# stage: evaluate (being written)
