# stage: data (being written)
