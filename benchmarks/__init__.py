"""lenskern's asv suite: one module per area, classes generated from the registry."""
