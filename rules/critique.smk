# stage: critique (being written)
