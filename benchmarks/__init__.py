"""lenskern's asv suite: one module per area; each class's parameters come
from the checked-out commit's registry (common.checkout_facts)."""
