"""A small API for tests/security/test_schema.py whose handlers reach their domain errors only
through methods of objects, as the routes reach the coverage index or the village index: an
object the runtime holds (a dataclass field), an attribute one of its methods set on ``self``,
a parameter's annotation, an object a module holds, what a function's return annotation names,
an object entered with ``async with``, a method a subclass overrides, and a function an object
is given to keep (read off the objects held, as the server's runtime is). Each route declares
none of them; one declares a conflict its code cannot meet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from dispatch.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    error_response,
)
from dispatch.routing import api_router


class Index:
    def find(self, name: str) -> str:
        raise NotFound(f"{name!r} is not on the shelf", field="name")


class Shelf:
    def __init__(self) -> None:
        self.index = Index()

    def take(self, name: str) -> str:
        return self.index.find(name)


class Ticket:
    async def punch(self) -> None:
        raise Conflict("punched already")

    def check(self) -> None:
        raise Forbidden("not your ticket")


class Counter:
    def spend(self) -> None:
        raise RateLimited("too many", retry_after_s=1)


class Gate:
    def open(self) -> None:
        """Opens; a kind of gate may refuse."""


class StuckGate(Gate):
    def open(self) -> None:
        raise Conflict("stuck")


class Loader:
    """As the village index: it is given the function that reads what it holds."""

    def __init__(self, load: Callable[[], str]) -> None:
        self._load = load

    def reload(self) -> str:
        return self._load()


@dataclass
class Holder:
    """As the runtime: what the server holds, by field."""

    shelf: Shelf
    gate: Gate
    loader: Loader


def holder() -> Holder:
    """The holder as a server would make it as it starts."""

    def load() -> str:
        raise Unauthorized("no key to the store")

    return Holder(Shelf(), StuckGate(), Loader(load))


COUNTER = Counter()


def get_holder(request: Request) -> Holder:
    holder: Holder = request.app.state.holder
    return holder


def get_ticket() -> Ticket:
    return Ticket()


def issue() -> Ticket:
    return Ticket()


class Turnstile:
    @asynccontextmanager
    async def passing(self) -> AsyncIterator[Ticket]:
        yield Ticket()


HolderDep = Annotated[Holder, Depends(get_holder)]
router = api_router("/fixture", tags=["fixture"])


@router.get("/shelf")
async def from_the_holders_field(holder: HolderDep) -> str:
    return holder.shelf.take("book")


@router.post("/ticket")
async def from_a_parameters_annotation(ticket: Annotated[Ticket, Depends(get_ticket)]) -> None:
    await ticket.punch()


@router.post("/counter")
async def from_an_object_a_module_holds() -> None:
    COUNTER.spend()


@router.get("/issued")
async def from_a_return_annotation() -> None:
    ticket = issue()
    ticket.check()


@router.post("/passing")
async def from_a_context_entered() -> None:
    async with Turnstile().passing() as ticket:
        await ticket.punch()


@router.post("/gate")
async def from_a_subclass(holder: HolderDep) -> None:
    holder.gate.open()


@router.post("/loaded")
async def from_a_callable_an_object_keeps(holder: HolderDep) -> str:
    return holder.loader.reload()


@router.post("/declared", responses={409: error_response(409, "never met")})
async def declares_what_it_cannot_meet(holder: HolderDep) -> str:
    return holder.shelf.__class__.__name__


def app() -> FastAPI:
    served = FastAPI()
    served.include_router(router)
    return served
