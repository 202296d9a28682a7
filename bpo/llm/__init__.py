"""The LLM layer: every stage's chat-completion calls, cached, concurrent, resumable, budgeted.

Public API (contract in docs/architecture.md)::

    from bpo.llm import ChatRequest, ChatResult, LLMClient, LLMError, BudgetExceeded
"""

from bpo.llm.client import BACKENDS, Estimate, LLMClient, client_from_mapping, make_client
from bpo.llm.errors import BudgetExceeded, EndpointUnreachable, LLMError, MissingAPIKey, ReplayMiss
from bpo.llm.request import ChatRequest, ChatResult, call_request
from bpo.llm.standin import STANDIN_MODEL

__all__ = [
    "BACKENDS",
    "BudgetExceeded",
    "EndpointUnreachable",
    "ChatRequest",
    "call_request",
    "ChatResult",
    "Estimate",
    "LLMClient",
    "client_from_mapping",
    "LLMError",
    "MissingAPIKey",
    "ReplayMiss",
    "STANDIN_MODEL",
    "make_client",
]
