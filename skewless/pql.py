"""Predictive queries: one query language for the batch and the realtime path.

A subset of the predictive query language of Kumo's PQL (``PREDICT <target> FOR EACH
<table>.<key>``), resolved against the one declaration (skewless/features.py): the tables are the
raw transactions and one table per declared entity, the targets are the declared tasks.

    PREDICT churn_30d FOR EACH customers.customer_id
    PREDICT COUNT(transactions.*, 0, 30, days) = 0 FOR EACH customers.customer_id
        WHERE COUNT(transactions.*, -30, 0, days) > 0
    PREDICT fraud_probability FOR transactions.transaction_id = 'T-90042'
    PREDICT churn FOR customers.customer_id IN ('c1', 'c2')

- ``PREDICT <target>``: a task by name or alias (``churn_30d``, ``churn``), by the column of its
  score (``fraud_probability``) or of its label (``is_fraud``), or a label written as an
  aggregation over a future window, ``COUNT(transactions.*, 0, 30, days) = 0`` (no transaction in
  the next 30 days), matched to the batch task with that label. ``parse(..., declare_new=True)``
  (``skewless predict --train``) makes a target no task predicts a new task (``declare_task``),
  which models/query_tasks.py trains and registers.
- ``FOR EACH <table>.<key>``: every entity (batch) or every transaction of the day (a realtime
  task scored in batch); ``FOR <table>.<key> = '<id>'`` or ``IN ('<id>', ...)``: those only.
- ``WHERE``: ``FOR EACH`` over an entity only; conditions joined by ``AND``, each an aggregation
  over a past window of the entity's transactions (``COUNT(transactions.*, -30, 0, days) > 0``;
  ``SUM``, ``AVG``, ``MIN``, ``MAX`` of a numeric column) or the key against ids (``= 'c1'``,
  ``IN (...)``).

Windows are (start, end, unit) from the prediction time t: [t + start, t + end), in ``days``,
``hours`` or ``minutes``. ``parse`` returns a ``Query`` resolved against the declaration, or raises
``QueryError`` naming the token (with a caret under it) or the unknown name and what exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from skewless import schemas
from skewless.features import ENTITIES
from skewless.tasks import PREDICTIONS_SCHEMA, TASKS, Task

EVENTS_TABLE = "transactions"  # the raw transactions: one row per event
AGGREGATIONS = ("COUNT", "SUM", "AVG", "MIN", "MAX")
UNITS = {"days": timedelta(days=1), "hours": timedelta(hours=1), "minutes": timedelta(minutes=1)}
COMPARISONS = ("=", "!=", "<>", "<=", ">=", "<", ">")
_NUMERIC = ("amount",)  # the raw contract's numeric columns (SUM, AVG, MIN, MAX)
MAX_WINDOW = timedelta(days=3650)  # the farthest a window may reach from t, either way
# the warehouse schema of the training sets of tasks declared by queries
QUERY_SCHEMA = "query_tasks"
QUERY_TASK_PREFIX = "pq_"  # the names of tasks declared by queries (MLflow models, tables)

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|[=<>(),.*])
  | (?P<bad>\S)
)""",
    re.VERBOSE,
)


def number(value: float) -> str:
    """A number as a query writes it, exactly and without exponent: ``100``, ``99.5``,
    ``12345.67``, ``10000000000000000`` (so it parses back to the same value)."""
    from decimal import Decimal

    return format(Decimal(repr(float(value))), "f").removesuffix(".0")


class QueryError(ValueError):
    """A query that does not parse or names something the declaration does not have."""


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    columns: tuple[str, ...]
    entity: str | None  # the declared entity, None for the transactions


def tables() -> dict[str, Table]:
    """The queryable tables: the raw transactions, and one per declared entity (``customers``)."""
    columns = (*schemas.REQUIRED_COLUMNS, *schemas.OPTIONAL_COLUMNS)
    out = {EVENTS_TABLE: Table(EVENTS_TABLE, schemas.EVENT_ID, columns, None)}
    for entity in ENTITIES:
        name = f"{entity.name}s"
        out[name] = Table(name, entity.join_key, (entity.join_key,), entity.name)
    return out


@dataclass(frozen=True)
class Aggregation:
    """``AGG(table.column, start, end, unit)``: over the entity's rows of ``table`` in
    [t + start, t + end); ``column`` None for ``*``."""

    function: str
    table: str
    column: str | None
    start: timedelta
    end: timedelta

    def __str__(self) -> str:
        column = self.column or "*"
        # the longest unit both bounds are whole numbers of (UNITS: longest first)
        unit, length = next(
            (u, n) for u, n in UNITS.items() if self.start % n == self.end % n == timedelta(0)
        )
        start, end = (int(b / length) for b in (self.start, self.end))
        return f"{self.function}({self.table}.{column}, {start}, {end}, {unit})"


@dataclass(frozen=True)
class Condition:
    """``aggregation <op> value`` or ``key IN ids``."""

    op: str
    value: float | tuple[str, ...]
    aggregation: Aggregation | None = None  # None: the key, compared with ids


@dataclass(frozen=True)
class Target:
    """A label written as an aggregation over a future window: ``aggregation op value``."""

    aggregation: Aggregation
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.aggregation} {self.op} {number(self.value)}"


@dataclass(frozen=True)
class Query:
    text: str
    task: Task
    table: Table  # the table the predictions are about
    ids: tuple[str, ...] | None  # FOR <key> = / IN: those ids; None: FOR EACH
    where: tuple[Condition, ...] = field(default_factory=tuple)
    target: Target | None = None  # the target, when written as an aggregation
    new: bool = False  # the task was declared by this query (``declare_new``): not trained yet

    @property
    def batch(self) -> bool:
        """Every entity (or transaction) at once, the batch_score path."""
        return self.ids is None


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


class _Parser:
    def __init__(self, text: str, known: tuple[Task, ...] = (), declare_new: bool = False):
        self.known, self.declare_new = known, declare_new
        self.text = text
        self.tokens: list[_Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:  # only spaces left
                break
            kind = match.lastgroup
            start = match.start(kind)
            if kind == "bad":
                self.fail(f"unexpected character {match.group(kind)!r}", start)
            self.tokens.append(_Token(kind, match.group(kind), start))
            pos = match.end()
        self.tokens.append(_Token("end", "", len(text.rstrip())))
        self.i = 0

    # -- errors ------------------------------------------------------------------------------------
    def fail(self, message: str, pos: int | None = None):
        """QueryError: the message, then the query's line holding ``pos`` with a caret under it."""
        pos = self.peek().pos if pos is None else pos
        start = self.text.rfind("\n", 0, pos) + 1
        end = self.text.find("\n", pos)
        line = self.text[start : end if end >= 0 else len(self.text)]
        row, column = self.text.count("\n", 0, pos) + 1, pos - start
        where = f"line {row}, column {column + 1}" if "\n" in self.text else f"position {pos + 1}"
        raise QueryError(f"{message} at {where}\n  {line}\n  {' ' * column}^")

    # -- tokens ------------------------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "name" and token.text.upper() in words

    def word(self, *words: str) -> str:
        if not self.at_word(*words):
            self.fail(f"expected {' or '.join(words)}, got {self._shown(self.peek())}")
        return self.next().text.upper()

    def op(self, *ops: str) -> str:
        token = self.peek()
        if token.kind != "op" or token.text not in ops:
            self.fail(f"expected {' or '.join(repr(o) for o in ops)}, got {self._shown(token)}")
        return self.next().text

    def name(self, what: str) -> _Token:
        token = self.peek()
        if token.kind != "name":
            self.fail(f"expected {what}, got {self._shown(token)}")
        return self.next()

    def number(self, what: str) -> float:
        token = self.peek()
        if token.kind != "number":
            self.fail(f"expected {what} (a number), got {self._shown(token)}")
        self.next()
        return float(token.text)

    def string(self) -> str:
        token = self.peek()
        if token.kind == "number":  # a numeric id
            return self.next().text
        if token.kind != "string":
            self.fail(f"expected an id in quotes ('T-90042'), got {self._shown(token)}")
        if token.text == "''":
            self.fail("an empty id")
        return self.next().text[1:-1].replace("''", "'")

    @staticmethod
    def _shown(token: _Token) -> str:
        return "the end of the query" if token.kind == "end" else repr(token.text)

    # -- grammar -----------------------------------------------------------------------------------
    def table(self) -> tuple[Table, _Token]:
        token = self.name("a table")
        known = tables()
        if token.text not in known:
            self.fail(f"unknown table {token.text!r}; tables: {', '.join(known)}", token.pos)
        return known[token.text], token

    def column(self, table: Table, *, star: bool = False) -> str | None:
        self.op(".")
        token = self.peek()
        if star and token.kind == "op" and token.text == "*":
            self.next()
            return None
        token = self.name(f"a column of {table.name}")
        if token.text not in table.columns:
            self.fail(
                f"unknown column {table.name}.{token.text}; columns: {', '.join(table.columns)}",
                token.pos,
            )
        return token.text

    def aggregation(self) -> Aggregation:
        token = self.name("an aggregation")
        function = token.text.upper()
        if function not in AGGREGATIONS:
            self.fail(
                f"unknown aggregation {token.text!r}; aggregations: {', '.join(AGGREGATIONS)}",
                token.pos,
            )
        self.op("(")
        table, table_token = self.table()
        if table.name != EVENTS_TABLE:
            self.fail(f"aggregations run over {EVENTS_TABLE}, not {table.name}", table_token.pos)
        column_pos = self.peek().pos + 1  # after the dot
        column = self.column(table, star=True)
        if function != "COUNT" and column not in _NUMERIC:
            self.fail(
                f"{function} needs a numeric column of {table.name} ({', '.join(_NUMERIC)})",
                column_pos,
            )
        self.op(",")
        start_pos = self.peek().pos
        start = self.number("the window's start")
        self.op(",")
        end = self.number("the window's end")
        unit = UNITS["days"]
        if self.peek().text == ",":
            self.next()
            token = self.name("a unit")
            if token.text.lower() not in UNITS:
                self.fail(f"unknown unit {token.text!r}; units: {', '.join(UNITS)}", token.pos)
            unit = UNITS[token.text.lower()]
        self.op(")")
        if start >= end:
            self.fail(f"a window ends after it starts: ({start:g}, {end:g})", start_pos)
        if max(abs(start), abs(end)) * (unit / timedelta(days=1)) > MAX_WINDOW.days:
            self.fail(f"a window reaches at most {MAX_WINDOW.days} days from t", start_pos)
        if any((bound * unit) % timedelta(minutes=1) for bound in (start, end)):
            self.fail(f"a window's bounds are whole minutes: ({start:g}, {end:g})", start_pos)
        return Aggregation(function, table.name, column, start * unit, end * unit)

    def comparison(self) -> tuple[str, float]:
        op = self.op(*COMPARISONS)
        return ("!=" if op == "<>" else op), self.number("a value")

    def ids(self) -> tuple[str, ...]:
        if self.peek().text == "=":
            self.next()
            return (self.string(),)
        if not self.at_word("IN"):
            self.fail(f"expected = '<id>' or IN ('<id>', ...), got {self._shown(self.peek())}")
        self.next()
        self.op("(")
        out = [self.string()]
        while self.peek().text == ",":
            self.next()
            out.append(self.string())
        self.op(")")
        return tuple(out)

    def parse(self) -> Query:
        self.word("PREDICT")
        target_pos, target_table = self.peek().pos, None
        if self.peek().kind == "name" and self.tokens[self.i + 1].text == "(":
            target = Target(self.aggregation(), *self.comparison())
        else:
            target = self.name("a task, its score or its label").text
            if self.peek().text == ".":  # table.column, e.g. transactions.is_fraud
                self.i -= 1
                target_table, _ = self.table()
                self.next()
                target = self.name(f"a column of {target_table.name}").text
        self.word("FOR")
        each = self.at_word("EACH")
        if each:
            self.next()
        table, table_token = self.table()
        key_pos = self.peek().pos + 1
        key = self.column(table)
        if key != table.key:
            self.fail(f"{table.name} are identified by {table.key}, not {key}", key_pos)
        ids = None if each else tuple(dict.fromkeys(self.ids()))  # a repeated id counts once
        where: list[Condition] = []
        if self.at_word("WHERE"):
            where_pos = self.next().pos
            if not each:
                self.fail("WHERE filters FOR EACH queries only", where_pos)
            where.append(self.condition(table))
            while self.at_word("AND"):
                self.next()
                where.append(self.condition(table))
        if self.peek().kind != "end":
            self.fail(f"unexpected {self._shown(self.peek())}")
        task, new = self.resolve(target, table, target_pos)
        if target_table is not None and target_table.name != table.name:
            self.fail(f"{target} is predicted per row of {table.name}, not {target_table.name}",
                      target_pos)  # fmt: skip
        if where and table.entity is None:
            self.fail(f"WHERE filters entities, not {table.name}", table_token.pos)
        aggregated = target if isinstance(target, Target) else None
        return Query(self.text, task, table, ids, tuple(where), aggregated, new)

    def resolve(self, target, table: Table, pos: int) -> tuple[Task, bool]:
        """The task of ``target`` and whether this query declares it."""
        if isinstance(target, Target):
            candidates = (*TASKS.values(), *self.known)
            for task in candidates:
                if _label_of(task) == str(target) and table.entity == task.entity.name:
                    return task, False
            if self.declare_new:
                try:
                    return declare_task(target, table), True
                except ValueError as exc:
                    self.fail(str(exc), pos)
            declared = [f"{t.name}: {_label_of(t)}" for t in candidates if _label_of(t)]
            self.fail(
                f"no task predicts {target} for {table.name}; targets: {'; '.join(declared)}"
                " (--train declares and trains a task for it)",
                pos,
            )
        for task in (*TASKS.values(), *self.known):  # a task declared by a query: by its name
            names = (task.name,) if task.query else (task.name, *task.aliases, task.score_column,
                                                     task.label)  # fmt: skip
            if target in names:
                on = EVENTS_TABLE if task.realtime else f"{task.entity.name}s"
                if table.name != on:
                    self.fail(f"{task.name} predicts per row of {on}, not {table.name}", pos)
                return task, False
        choices = [n for t in TASKS.values() for n in (t.name, *t.aliases, t.score_column, t.label)]
        self.fail(f"unknown target {target!r}; targets: {', '.join(choices)}", pos)
        raise AssertionError("unreachable")  # pragma: no cover

    def condition(self, table: Table) -> Condition:
        if (
            self.peek().kind == "name"
            and self.peek().text in tables()
            and self.peek().text != table.name
        ):
            self.fail(f"WHERE compares {table.name}.{table.key} or aggregations only")
        if self.peek().kind == "name" and self.peek().text == table.name:
            self.next()
            key_pos = self.peek().pos + 1
            if self.column(table) != table.key:
                self.fail(f"WHERE compares {table.name}.{table.key} only", key_pos)
            return Condition("in", self.ids())
        start = self.peek().pos
        aggregation = self.aggregation()
        if aggregation.end > timedelta(0):
            self.fail(f"a filter looks at the past: {aggregation} ends after t", start)
        op, value = self.comparison()
        return Condition(op, value, aggregation)


def _label_of(task: Task) -> str | None:
    """A batch task's label as a predictive query target: no transaction within its horizon, or
    the target a task declared by a query was declared from."""
    if task.query is not None:
        return task.query
    if task.realtime or task.label_horizon is None:
        return None
    return f"{Aggregation('COUNT', EVENTS_TABLE, None, timedelta(0), task.label_horizon)} = 0"


_OPS = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_UNIT_LETTERS = {"days": "d", "hours": "h", "minutes": "m"}


def task_name(target: Target) -> str:
    """The name of the task declared from ``target``: ``pq_count_all_0_14d_eq_0`` for
    ``COUNT(transactions.*, 0, 14, days) = 0``; the same target, the same name."""
    agg = target.aggregation
    unit, length = next(
        (u, n) for u, n in UNITS.items() if agg.start % n == agg.end % n == timedelta(0)
    )
    start, end = (int(b / length) for b in (agg.start, agg.end))
    value = number(target.value).replace("-", "m").replace(".", "p").replace("+", "")
    return (
        f"{QUERY_TASK_PREFIX}{agg.function.lower()}_{agg.column or 'all'}_{start}_{end}"
        f"{_UNIT_LETTERS[unit]}_{_OPS[target.op]}_{value}"
    )


def declare_task(target: Target, table: Table) -> Task:
    """A batch task for ``target`` over ``table``'s entity, declared from the query: the
    features, training rows (entities active within the same window) and model configuration
    of the entity's declared batch task, the label ``target`` evaluated after each training
    row's time, known once its window has ended. ValueError when the target cannot be a label."""
    from dataclasses import replace

    agg = target.aggregation
    if table.entity is None:
        raise ValueError(f"a target written as an aggregation is predicted per entity, not per "
                         f"row of {table.name}")  # fmt: skip
    if agg.start < timedelta(0):
        raise ValueError(f"a target looks ahead: {agg} starts before t")
    templates = [t for t in TASKS.values() if not t.realtime and t.entity.name == table.entity]
    if not templates:
        raise ValueError(
            f"no declared batch task of {table.entity}s to take features and training rows from"
        )
    based_on, name = templates[0], task_name(target)
    return replace(
        based_on,
        name=name,
        description=f"Predictive query target {target} for each {table.entity}.",
        training_set=f"{QUERY_SCHEMA}.{name}_training_set",
        label="label",
        label_horizon=agg.end,
        score_column="probability",
        predictions_table=f"{PREDICTIONS_SCHEMA}.{name}_scores",
        route="",
        aliases=(),
        query=str(target),
        based_on=based_on.name,
    )


def parse(text: str, *, known: tuple[Task, ...] = (), declare_new: bool = False) -> Query:
    """The query resolved against the declaration; QueryError with the position otherwise.

    ``known``: tasks declared by earlier queries (models/query_tasks.py finds them in the model
    registry), matched by their target. ``declare_new``: a target written as an aggregation that
    no task predicts declares a new task (``Query.new``) instead of an error.
    """
    if not text or not text.strip():
        raise QueryError("empty query: PREDICT <target> FOR [EACH] <table>.<key> ...")
    return _Parser(text, tuple(known), declare_new).parse()
