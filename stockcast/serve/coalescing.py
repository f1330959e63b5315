"""Answer the requests that arrive together with one call: micro-batching for an asyncio server.

A model call costs about as much for one row as for a dozen (``stockcast.serve.answers.answer_queries``; figures in
BENCHMARKS.md, "Serving"), so under load a server that makes one call per request spends most of its prediction time
on per-call overhead. ``PerTurnBatcher`` collects every question asked during one turn of the event loop and answers
them all with one call of its answering function at the end of that turn. A request alone waits for nothing: its
batch is answered as soon as the handlers already running have reached the batcher.

Why not BentoML's adaptive batching: its batchable APIs take a list as the whole request body, pass one argument
only (``/predict`` also takes ``as_of``) and fail every request of a batch when one of them is invalid; here each
request keeps its own body, its own validation and its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Question = TypeVar("Question")
Answer = TypeVar("Answer")


class PerTurnBatcher(Generic[Question, Answer]):
    """Answers every question submitted during one event-loop turn with one call of ``answer_all``.

    ``answer_all`` gets the questions in submission order and returns, in the same order, each one's answer or the
    exception to raise to its asker; an exception it raises itself reaches every asker of that batch. It runs on
    the event loop, so it must be quick (here: a millisecond or two for a model call).
    """

    def __init__(self, answer_all: Callable[[list[Question]], Sequence[Answer | Exception]]) -> None:
        self._answer_all = answer_all
        self._waiting: list[tuple[Question, asyncio.Future[Answer]]] = []

    async def ask(self, question: Question) -> Answer:
        """The answer to ``question``, computed together with the other questions of this turn."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((question, answer))
        if len(self._waiting) == 1:
            loop.call_soon(self._answer_waiting)
        return await answer

    def _answer_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        try:
            answers = self._answer_all([question for question, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} questions")
        except Exception as error:  # a failure of the whole call is every asker's failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # the asker gave up (its request timed out or was cancelled)
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
