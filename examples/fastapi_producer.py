"""A FastAPI app whose routes enqueue actorq tasks and await their results (asyncio producer).

The producer lives as long as the app: it is connected in the lifespan, on the server's own
event loop (``actorq.aio`` runs nats-py there; no trio, no thread), and routes reach it
through a dependency. Workers run elsewhere: ``actorq run examples.fastapi_producer:app``.

Serve it (with ``ACTORQ_URL`` pointing at NATS, or none for the local node)::

    uvicorn examples.fastapi_producer:api

Run as a script, it exercises itself: an embedded NATS server, a worker in a background
thread, and FastAPI's ``TestClient`` calling the routes::

    python examples/fastapi_producer.py
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import attrs
import trio
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import actorq
import actorq.aio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# --- the tasks (usually in their own module, imported by workers and web app alike) -------

app = actorq.App("shop")


@attrs.frozen
class Quote:
    items: int
    total: float


# A bad discount will never get better by retrying: fail at once.
@app.task(name="shop.quote", retry=actorq.RetryPolicy(non_retryable=(ValueError,)))
async def quote(prices: list[float], discount: float = 0.0) -> Quote:
    """Price a basket (results come back typed: a `Quote`)."""
    if not 0 <= discount < 1:
        raise ValueError(f"discount must be in [0, 1), got {discount}")
    await trio.sleep(0.05)  # a call to the pricing service
    return Quote(items=len(prices), total=round(sum(prices) * (1 - discount), 2))


# --- the web app ------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    # One producer per process, for as long as the app runs. No URL: ACTORQ_URL, else the
    # local node of this folder.
    async with actorq.aio.connect(app) as producer:
        api.state.producer = producer
        yield


api = FastAPI(title="shop", lifespan=lifespan)


def get_producer(request: Request) -> actorq.aio.Producer:
    producer: actorq.aio.Producer = request.app.state.producer
    return producer


Producer = Annotated[actorq.aio.Producer, Depends(get_producer)]


class Basket(BaseModel):
    prices: list[float]
    discount: float = 0.0


@api.post("/quotes", status_code=202)
async def start_quote(basket: Basket, producer: Producer) -> dict[str, str]:
    """Enqueue and answer at once with the task id (the client polls below)."""
    handle = await producer.enqueue(quote, basket.prices, discount=basket.discount)
    return {"task_id": handle.id}


@api.get("/quotes/{task_id}")
async def get_quote(task_id: str, producer: Producer, wait: float = 1.0) -> dict[str, object]:
    """The quote of a task — from any process, stored or live — waiting up to ``wait`` s."""
    try:
        handle = producer.handle(task_id, quote)
    except ValueError as error:
        raise HTTPException(404, str(error)) from None
    try:
        result = await handle.result(timeout=wait)
    except actorq.ResultTimeout:
        return {"status": "pending"}
    except actorq.TaskFailed as failure:
        return {"status": "failed", "error": failure.message}
    return {"status": "done", "items": result.items, "total": result.total}


@api.post("/quotes/now")
async def quote_now(basket: Basket, producer: Producer) -> dict[str, object]:
    """Enqueue and wait for the result within the request."""
    handle = await producer.enqueue(quote, basket.prices, discount=basket.discount)
    try:
        result = await handle.result(timeout=5)
    except actorq.TaskFailed as failure:
        raise HTTPException(422, failure.message) from None
    except actorq.ResultTimeout:
        raise HTTPException(504, f"no quote within 5 s; poll /quotes/{handle.id}") from None
    return attrs.asdict(result)


# --- run as a script: exercise the routes ------------------------------------------------


def main() -> None:
    from fastapi.testclient import TestClient

    from actorq.testing import run_server, worker_thread

    with run_server() as server, worker_thread(app, server.url, concurrency=4):
        os.environ["ACTORQ_URL"] = server.url
        with TestClient(api) as http:  # runs the lifespan: the producer connects
            answer = http.post("/quotes/now", json={"prices": [10, 20.5], "discount": 0.1})
            print("POST /quotes/now ->", answer.status_code, answer.json())
            assert answer.json() == {"items": 2, "total": 27.45}

            task_id = http.post("/quotes", json={"prices": [1, 2, 3]}).json()["task_id"]
            print("POST /quotes ->", task_id)
            answer = http.get(f"/quotes/{task_id}", params={"wait": 5})
            print(f"GET /quotes/{task_id} ->", answer.json())
            assert answer.json() == {"status": "done", "items": 3, "total": 6.0}

            failed = http.post("/quotes/now", json={"prices": [1], "discount": 2})
            print("POST /quotes/now (bad discount) ->", failed.status_code, failed.json())
            assert failed.status_code == 422

            missing = http.get("/quotes/not-a-task-id")
            print("GET /quotes/not-a-task-id ->", missing.status_code)
            assert missing.status_code == 404


if __name__ == "__main__":
    main()
