"""PerTurnBatcher: questions asked together are answered by one call, each asker gets its own answer or error."""

from __future__ import annotations

import asyncio

import pytest

from stockcast.serve.coalescing import PerTurnBatcher


class Squarer:
    """Squares numbers, refuses negative ones, and records the batches it was called with."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, numbers: list[int]) -> list[int | Exception]:
        self.batches.append(numbers)
        return [ValueError(f"{n} is negative") if n < 0 else n * n for n in numbers]


def test_questions_asked_in_the_same_turn_share_one_call_and_keep_their_own_answers() -> None:
    squarer = Squarer()

    async def main() -> list[int | BaseException]:
        batcher = PerTurnBatcher(squarer)
        return await asyncio.gather(*(batcher.ask(n) for n in [3, -1, 4, 3]), return_exceptions=True)

    answers = asyncio.run(main())

    assert squarer.batches == [[3, -1, 4, 3]]
    assert answers[0] == 9 and answers[2] == 16 and answers[3] == 9
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "-1 is negative"


def test_questions_asked_one_after_another_are_answered_one_by_one() -> None:
    squarer = Squarer()

    async def main() -> list[int]:
        batcher = PerTurnBatcher(squarer)
        return [await batcher.ask(n) for n in [1, 2, 3]]

    assert asyncio.run(main()) == [1, 4, 9]
    assert squarer.batches == [[1], [2], [3]]


def test_a_failing_call_fails_every_asker_of_its_batch_and_the_next_batch_is_answered() -> None:
    calls = 0

    def flaky(numbers: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model unavailable")
        return numbers

    async def main() -> tuple[list[int | BaseException], int]:
        batcher = PerTurnBatcher(flaky)
        failed = await asyncio.gather(batcher.ask(1), batcher.ask(2), return_exceptions=True)
        return failed, await batcher.ask(3)

    failed, later = asyncio.run(main())
    assert [str(error) for error in failed] == ["model unavailable", "model unavailable"]
    assert later == 3


def test_an_answering_function_losing_answers_is_an_error_for_everyone_not_a_hang() -> None:
    async def main() -> list[int | BaseException]:
        batcher = PerTurnBatcher(lambda numbers: numbers[:1])
        return await asyncio.gather(batcher.ask(1), batcher.ask(2), return_exceptions=True)

    answers = asyncio.run(main())
    assert all(isinstance(answer, RuntimeError) and "1 answers for 2 questions" in str(answer) for answer in answers)


def test_an_asker_that_gave_up_does_not_disturb_the_others() -> None:
    squarer = Squarer()

    async def main() -> tuple[int, bool]:
        batcher = PerTurnBatcher(squarer)
        impatient = asyncio.ensure_future(batcher.ask(5))
        patient = asyncio.ensure_future(batcher.ask(6))
        await asyncio.sleep(0)  # both are waiting now
        impatient.cancel()
        answer = await asyncio.wait_for(patient, timeout=5)
        with pytest.raises(asyncio.CancelledError):
            await impatient
        return answer, impatient.cancelled()

    assert asyncio.run(main()) == (36, True)
    assert squarer.batches == [[5, 6]]
