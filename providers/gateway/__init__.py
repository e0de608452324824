"""The OpenAI-compatible gateway: `/v1/chat/completions` and `/v1/models` for programs.

Requests are authenticated with Gatehouse API tokens, routed, admitted and settled exactly like
chat messages (same budgets, rate limits and ledger; ledger rows carry no chat), and answered in
OpenAI's wire format whatever the provider kind behind the route. User documentation:
the README (OpenAI-compatible gateway).

- `wire`: request parsing and validation; response, chunk and error formatting.
- `views`: the async Django views (no DRF on this path).
- `streaming`: the Server-Sent Events body, which settles exactly once however it ends.
- `billing`: admission and settlement, and the timing a ledger row needs.
"""
