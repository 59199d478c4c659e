"""Chat streams keep the connection: the next turn skips a new TCP (and TLS) handshake."""

from __future__ import annotations

from homemind_client.models import ChatRequest

from .helpers import CHAT_RESPONSE, Sleep, event, make_client, sse


async def test_consecutive_streams_reuse_one_connection(serve, session) -> None:
    # The real server ends the body a moment after `done` (it records usage first).
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "Hi"}),
                event("done", CHAT_RESPONSE),
                Sleep(0.05),
            )
        }
    )
    client = make_client(session, server.url)

    for _ in range(3):
        events = [e async for e in client.chat_stream(ChatRequest(message="hi"))]
        assert events[-1].type == "done"

    transports = {id(r.transport) for r in server.requests}
    assert len(server.requests) == 3
    assert len(transports) == 1


async def test_consumer_stopping_at_done_still_gets_the_whole_answer(serve, session) -> None:
    server = await serve({"POST /api/chat/stream": sse(event("done", CHAT_RESPONSE), Sleep(0.05))})
    client = make_client(session, server.url)

    async for item in client.chat_stream(ChatRequest(message="hi")):
        assert item.type == "done"
        assert item.response.reply == CHAT_RESPONSE["reply"]
        break
