"""The domain errors (``dispatch.errors.DomainError``) a route's code can raise, read from the
code: its handler, its dependencies, and every function and method of ours they name.

A method is found through the type of what it is called on: a parameter's annotation (the
runtime's ``RuntimeDep`` included), an attribute of a class (a dataclass field, an annotated
attribute, or what ``__init__`` and the other methods assign to ``self``), a property's return
annotation, what a local name is assigned (a class built, a function's return annotation, a
context manager entered, an element of a sequence iterated), ``self`` in a method, and the
class of an object a module holds (``get_principal = BearerPrincipal()``). A method is taken
from the class and from each of its subclasses of ours (one may override it).

A callable kept in an attribute (its type says ``Callable[...]``, not what is kept: the
village index's and the duty book's loaders) is read off the objects the running server holds
(``held``: its runtime, and the objects of ours it holds, theirs, and so on), as is the class
of such an object where no annotation names it.

What it cannot follow: a callable handed in as a parameter to a function, and a method called
on an expression without a type of ours (a dict's value, an untyped lambda's argument). So: an
over-approximation of what the code names (every branch counts), an under-approximation of
those callables.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import functools
import inspect
import operator
import sys
import textwrap
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dispatch.errors import DomainError

# The packages whose code is read: the product's.
OURS = ("dispatch.", "alerts.", "geo.")

# A name's possible values: classes of the objects it may hold.
Types = frozenset[type]
NOTHING: Types = frozenset()
# A thing a function names, the class it is taken from, and whether it is called or raised.
Named = tuple[Any, "type | None", bool]


def _ours(thing: Any, ours: tuple[str, ...]) -> bool:
    return str(getattr(thing, "__module__", "") or "").startswith(ours)


def _evaluated(annotation: Any, namespace: dict[str, Any]) -> Any:
    """An annotation as an object: the modules say ``from __future__ import annotations``, so
    each is a string, read in its module's names (None for a name imported only for the type
    checker, which the module does not hold at run time)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)  # the product's own annotations, nothing sent
    except Exception:
        return None


def _classes(hint: Any, ours: tuple[str, ...], *, element: bool = False) -> Types:
    """The classes of ours a value of type ``hint`` may be (``element``: an item of it, for a
    loop over a sequence of them). ``Annotated[T, Depends(...)]`` is a T; ``A | None`` an A;
    ``type[A]`` is A too (its class methods)."""
    if hint is None:
        return NOTHING
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _classes(args[0], ours, element=element)
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(_classes(a, ours, element=element) for a in args))
    if element:
        if origin is not None and args and _iterable(origin):
            return _classes(args[0], ours)
        return NOTHING
    if origin is type and args:
        return _classes(args[0], ours)
    if origin is not None and _awaitable(origin) and args:
        return _classes(args[-1], ours)
    if inspect.isclass(hint) and _ours(hint, ours):
        return frozenset({hint})
    return NOTHING


def _iterable(origin: Any, *, asynchronous: bool = False) -> bool:
    kinds: tuple[type, ...] = (collections.abc.Iterable,)
    if asynchronous:
        kinds += (collections.abc.AsyncIterable,)
    return inspect.isclass(origin) and issubclass(origin, kinds)


def _awaitable(origin: Any) -> bool:
    return inspect.isclass(origin) and issubclass(origin, collections.abc.Awaitable)


def _with_subclasses(classes: Iterable[type], ours: tuple[str, ...]) -> Iterator[type]:
    for klass in classes:
        yield klass
        subclasses: list[type] = klass.__subclasses__()
        subclasses = [sub for sub in subclasses if _ours(sub, ours)]
        yield from _with_subclasses(subclasses, ours)


def _function_node(tree: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def _owner(function: types.FunctionType) -> type | None:
    """The class a function is a method of, by its qualified name in its module."""
    parts = function.__qualname__.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    owner: Any = sys.modules.get(function.__module__)
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
    return owner if inspect.isclass(owner) else None


def _held(roots: Iterable[object], ours: tuple[str, ...]) -> dict[type, list[object]]:
    """The objects of ours reachable from ``roots`` through their attributes (and the lists,
    tuples, sets and dicts these hold), by class."""
    found: dict[type, list[object]] = {}
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        thing = stack.pop()
        if id(thing) in seen:
            continue
        seen.add(id(thing))
        if isinstance(thing, list | tuple | set | frozenset):
            stack.extend(thing)
        elif isinstance(thing, dict):
            stack.extend(thing.values())
        elif _ours(type(thing), ours) and not inspect.isclass(thing):
            found.setdefault(type(thing), []).append(thing)
            stack.extend(getattr(thing, "__dict__", {}).values())
    return found


@dataclass
class Reader:
    """Reads the domain errors of functions; ``ours``: the packages whose code it follows;
    ``held``: the objects the running server holds (its runtime)."""

    ours: tuple[str, ...] = OURS
    held: Iterable[object] = ()
    seen: set[Any] = field(default_factory=set)
    instances: dict[type, list[object]] = field(init=False)
    # What each function read names, read once for every route that reaches it.
    named: dict[tuple[Any, type | None], list[Named]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.instances = _held(self.held, self.ours)

    def kept(self, klass: type, name: str) -> list[Any]:
        """What the held objects of ``klass`` keep in their attribute ``name``."""
        return [
            vars(thing)[name]
            for thing in self.instances.get(klass, ())
            if name in getattr(thing, "__dict__", {})
        ]

    # ------------------------------------------------------------------ what a route names

    def errors(self, thing: Any) -> set[type[DomainError]]:
        """The domain errors ``thing`` (a function, or an object called as one) can raise,
        with those of everything of ours it names."""
        self.seen = set()
        found: set[type[DomainError]] = set()
        self._follow(thing, found)
        return found

    def _follow(
        self,
        thing: Any,
        found: set[type[DomainError]],
        owner: type | None = None,
        *,
        made: bool = True,
    ) -> None:
        """``made``: whether a domain error named here is made (called or raised), rather than
        caught or compared."""
        if isinstance(thing, functools.partial):
            self._follow(thing.func, found)
            return
        if isinstance(thing, staticmethod | classmethod):
            self._follow(thing.__func__, found, owner)
            return
        if isinstance(thing, property):
            for accessor in (thing.fget, thing.fset):
                self._follow(accessor, found, owner)
            return
        if inspect.ismethod(thing):
            self._follow(thing.__func__, found, type(thing.__self__))
            return
        if inspect.isclass(thing):
            if issubclass(thing, DomainError):
                if made:
                    found.add(thing)
            elif _ours(thing, self.ours):
                for name in ("__init__", "__post_init__", "__call__"):
                    method = thing.__dict__.get(name)
                    if method is not None:
                        self._follow(method, found, thing)
            return
        if not inspect.isfunction(thing):
            # An object of ours called as a function (a dependency such as BearerPrincipal).
            if _ours(type(thing), self.ours) and callable(thing):
                self._follow(type(thing).__call__, found, type(thing))
            return
        thing = inspect.unwrap(thing)
        if thing in self.seen or not _ours(thing, self.ours):
            return
        self.seen.add(thing)
        key = (thing, owner or _owner(thing))
        if key not in self.named:
            self.named[key] = self._read(*key)
        for named, named_owner, named_made in self.named[key]:
            self._follow(named, found, named_owner, made=named_made)

    # ------------------------------------------------------------------ one function's code

    def _read(self, function: types.FunctionType, owner: type | None) -> list[Named]:
        """What ``function``'s code names: each thing, the class it is taken from (for a
        method's ``self``), and whether it is called or raised there."""
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            return []
        tree = ast.parse(textwrap.dedent(source))
        node = _function_node(tree)
        if node is None:
            return []
        scope = _Scope(self, function, owner, node)
        made = {
            id(child.func if isinstance(child, ast.Call) else child.exc)
            for child in ast.walk(node)
            if isinstance(child, ast.Call | ast.Raise)
        }
        named: list[Named] = []
        for child in ast.walk(node):
            if isinstance(child, ast.Name) and child.id in scope.names and id(child) not in made:
                continue  # a local or a parameter, not called here
            if isinstance(child, ast.Name | ast.Attribute):
                named += [
                    (thing, scope.owner_of(child), id(child) in made)
                    for thing in scope.things(child)
                ]
        return named


class _Scope:
    """The types of one function's names: its parameters, ``self``, and its locals."""

    def __init__(
        self,
        reader: Reader,
        function: types.FunctionType,
        owner: type | None,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
    ) -> None:
        self.reader = reader
        self.ours = reader.ours
        self.globals = function.__globals__
        if function.__closure__:
            # A function made in another (a loader made as the server starts) names its
            # maker's locals too.
            free = inspect.getclosurevars(function).nonlocals
            self.globals = {**self.globals, **free}
        self.names: dict[str, Types] = {}
        annotations = getattr(function, "__annotations__", {})
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        for position, argument in enumerate(every):
            hint = _evaluated(annotations.get(argument.arg), self.globals)
            classes = _classes(hint, self.ours)
            if position == 0 and owner is not None and argument.arg in ("self", "cls"):
                classes = frozenset({owner})
            self.names[argument.arg] = classes
        # Locals, from what they are assigned: twice, for a name assigned from another
        # assigned later in the text (a loop's).
        for _ in range(2):
            for child in ast.walk(node):
                self._learn(child)

    def _bind(self, target: ast.AST, classes: Types) -> None:
        if isinstance(target, ast.Name) and classes:
            self.names[target.id] = self.names.get(target.id, NOTHING) | classes

    def _learn(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind(target, self.types(node.value))
        elif isinstance(node, ast.AnnAssign):
            hint = _evaluated(ast.unparse(node.annotation), self.globals)
            self._bind(node.target, _classes(hint, self.ours))
            if node.value is not None:
                self._bind(node.target, self.types(node.value))
        elif isinstance(node, ast.NamedExpr):
            self._bind(node.target, self.types(node.value))
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            self._bind(node.target, self.types(node.iter, element=True))
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, self.types(item.context_expr, entered=True))

    # ------------------------------------------------------------------ expressions

    def types(self, node: ast.AST, *, element: bool = False, entered: bool = False) -> Types:
        """The classes of ours the value of ``node`` may be (``element``: an item of it)."""
        if isinstance(node, ast.Await):
            return self.types(node.value, element=element, entered=entered)
        if isinstance(node, ast.Name) and not element and node.id in self.names:
            return self.names[node.id]
        if isinstance(node, ast.Call):
            found = NOTHING
            for thing in self.things(node.func):
                found |= self._returned(thing, element=element, entered=entered)
            return found
        if isinstance(node, ast.Name | ast.Attribute):
            found = NOTHING
            for holder, name in self._attributes(node):
                found |= _classes(self._attribute_hint(holder, name), self.ours, element=element)
                if not element:
                    found |= {
                        type(value)
                        for value in self.reader.kept(holder, name)
                        if _ours(type(value), self.ours) and not callable(value)
                    }
            for thing in self.things(node):
                if not element and _ours(type(thing), self.ours) and not inspect.isclass(thing):
                    found |= {type(thing)}
            return found
        return NOTHING

    def _returned(self, thing: Any, *, element: bool, entered: bool) -> Types:
        """What calling ``thing`` gives: an object of a class, or a function's return."""
        if inspect.isclass(thing):
            return frozenset({thing}) if _ours(thing, self.ours) and not element else NOTHING
        function = inspect.unwrap(getattr(thing, "__func__", thing))
        if not inspect.isfunction(function) or not _ours(function, self.ours):
            return NOTHING
        hint = _evaluated(function.__annotations__.get("return"), function.__globals__)
        if entered:
            # An asynccontextmanager's function yields what ``as`` names.
            origin, args = typing.get_origin(hint), typing.get_args(hint)
            if origin is not None and _iterable(origin, asynchronous=True) and args:
                hint = args[0]
            elif origin is not None and _awaitable(origin) and args:
                hint = args[-1]
        return _classes(hint, self.ours, element=element)

    def _attributes(self, node: ast.AST) -> Iterator[tuple[type, str]]:
        """For ``x.name``: each class of ours x may be, with ``name``."""
        if isinstance(node, ast.Attribute):
            for klass in _with_subclasses(self.types(node.value), self.ours):
                yield klass, node.attr

    def _attribute_hint(self, klass: type, name: str) -> Any:
        return _class_attributes(klass, self.ours).get(name)

    def things(self, node: ast.AST) -> list[Any]:
        """What a name or an attribute stands for: a module's function, class or object, or a
        method of the classes its object may be of."""
        if isinstance(node, ast.Name):
            if node.id in self.names:
                # A local or a parameter: an object of one of these classes, called.
                calls = (klass.__dict__.get("__call__") for klass in self.names[node.id])
                return [call for call in calls if call is not None]
            value = self.globals.get(node.id, getattr(builtins, node.id, None))
            return [] if value is None else [value]
        if not isinstance(node, ast.Attribute):
            return []
        found: list[Any] = []
        if isinstance(node.value, ast.Name) and node.value.id not in self.names:
            module = self.globals.get(node.value.id)
            if isinstance(module, types.ModuleType):
                found.append(getattr(module, node.attr, None))
            elif module is not None and not inspect.isclass(module):
                found.append(getattr(type(module), node.attr, None))
            elif inspect.isclass(module):
                found.append(inspect.getattr_static(module, node.attr, None))
        for klass, name in self._attributes(node):
            found.append(inspect.getattr_static(klass, name, None))
            # A callable an object keeps (a loader it was given), as the server holds it.
            found += [value for value in self.reader.kept(klass, name) if callable(value)]
        return [thing for thing in found if thing is not None]

    def owner_of(self, node: ast.AST) -> type | None:
        """The class a method named by ``node`` is taken from (for its ``self``)."""
        for klass, _ in self._attributes(node):
            return klass
        return None


# Each class's attributes, once read; a class being read has what is found so far (a method
# that assigns one attribute from another of the same class).
_CLASS_ATTRIBUTES: dict[tuple[type, tuple[str, ...]], dict[str, Any]] = {}


def _class_attributes(klass: type, ours: tuple[str, ...]) -> dict[str, Any]:
    """The type of each attribute of ``klass``'s objects: annotated in the class (its own and
    its bases'), a property's return, or assigned to ``self`` in one of its methods."""
    known = _CLASS_ATTRIBUTES.get((klass, ours))
    if known is not None:
        return known
    hints: dict[str, Any] = {}
    _CLASS_ATTRIBUTES[klass, ours] = hints
    for base in reversed(klass.__mro__):
        if not _ours(base, ours):
            continue
        namespace = vars(sys.modules[base.__module__])
        for name, annotation in vars(base).get("__annotations__", {}).items():
            hints[name] = _evaluated(annotation, namespace)
        for name, member in vars(base).items():
            if isinstance(member, property) and member.fget is not None:
                hints[name] = _evaluated(member.fget.__annotations__.get("return"), namespace)
    reader = Reader(ours)
    for base in klass.__mro__:
        if not _ours(base, ours):
            continue
        for member in vars(base).values():
            if not inspect.isfunction(member):
                continue
            try:
                node = _function_node(ast.parse(textwrap.dedent(inspect.getsource(member))))
            except (OSError, TypeError, SyntaxError):
                continue
            if node is None:
                continue
            scope = _Scope(reader, member, base, node)
            for child in ast.walk(node):
                for target, value in _assigned_to_self(child):
                    if target not in hints:
                        classes = scope.types(value) if value is not None else NOTHING
                        hints[target] = functools.reduce(operator.or_, classes) if classes else None
                    if isinstance(child, ast.AnnAssign):
                        hints[target] = _evaluated(ast.unparse(child.annotation), scope.globals)
    return hints


def _assigned_to_self(node: ast.AST) -> Iterator[tuple[str, ast.AST | None]]:
    targets: list[ast.expr]
    value: ast.AST | None
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign):
        targets, value = [node.target], node.value
    else:
        return
    for target in targets:
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            yield target.attr, value
