# stage: report (being written)
