"""`testtime serve`: test-time strategies behind an OpenAI-compatible HTTP API.

    from testtime.engines import TransformersEngine
    from testtime.serve import ServeConfig, create_app
    app = create_app(TransformersEngine("default"), config=ServeConfig(api_key="secret"))
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Clients pick the strategy and budget per request (`extra_body={"strategy": "majority", "budget": 8}` or the
`X-Testtime-Strategy` / `X-Testtime-Budget` headers) and get a standard chat completion whose `usage` counts
every token generated for them. Needs the `serve` extra (fastapi, uvicorn).
"""

from ._app import create_app
from ._config import ServeConfig
from ._request import BUDGET_HEADER, STRATEGY_HEADER, ChatRequest, parse_chat_request
from ._thread import ServerThread

__all__ = ["BUDGET_HEADER", "STRATEGY_HEADER", "ChatRequest", "ServeConfig", "ServerThread", "create_app", "parse_chat_request"]
