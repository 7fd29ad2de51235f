"""Read the germ line's equations from a model's SBML into a table that the compiled kernel runs on.

The *germ line* is every species that feeds nothing back to the retinoid core: what remains once
the species that take part in a feedback loop (or influence one, or are set by an event) are taken
out, found from the rate laws with libsbml. Two of its species are not integrated: the partner of a
conserved pair (a pair whose reactions only move amount between them: the sealed tight junctions,
``total - open``) and ledgers that nothing reads (``Eliminated``).

Each integrated state's equation is decomposed, from the model's own rate laws, into

    x' = sum_p c_p g_p(t) s_p  -  (sum_q c_q g_q(t)) x  -  b x^2  -  V x / (K + x)

where every ``c`` is a product of parameters (evaluated per run), every *gate* ``g`` is a function of
the core's signals and the head states (below), ``s`` an upstream state or absent, ``b`` and ``V, K``
constant. The scheme follows from the terms: ``logistic`` when there is a quadratic loss (the stem
pool's self-renewal ``r x (1 - x / N)`` gives ``-r`` in the rate and ``r / N`` in ``b``), ``saturable``
when there is a Michaelis-Menten loss (the excurrent ducts), ``linear`` otherwise. Stoichiometry
and species conversion factors enter ``c`` (the doubling and the 4x of meiosis).

Rules the table follows, since the SBML cannot say them (the kernel's spec):

- *Inputs* are the core quantities the germ line reads: core species, and assignment rules that
  read only the core (``RAR_occupancy``, ``RA_signal``, ``spermiation_gate``), recorded from the core
  rather than inlined; rules that read germ-line species are inlined.
- The *head* is the states whose equations read no other germ-line state (4-oxo-isotretinoin, STRA8,
  the open junctions): they follow the doses within hours, so the split exact path keeps them in
  libroadrunner; the *chain* is the rest (stem cells to cauda). Gates may read inputs and head
  states only.
- Of a conserved pair, the species declared last is integrated and the other derived.
- The *fast inputs* are the inputs read by a term that feeds a saturable stage (the spermiation
  gate, which feeds the caput; one per focus class, ``F{k}__spermiation_gate``, when the testis is
  built from classes): each is interpolated by a mean-corrected cubic inside each step, and the
  states whose equations read one (every class's mature spermatids and the shared caput) form the
  *sub-stepped block*, integrated together. A block state's loss may be gated by one fast input at
  most; the block is made contiguous in the cascade (every class's chain first, then the block,
  then the states after it).

A rate law outside this form is refused with :class:`ModelBuildError` naming the species and
reaction, so an edit that the compiled paths cannot follow stops them instead of being ignored.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Union

import libsbml

from ra_model.errors import ModelBuildError, UnsupportedRateLawError

#: An expression: ("const", value), ("param", id), ("input", id), ("state", id), (op, a[, b]) for
#: op in ``+ - * / ^ neg exp ln sqrt``.
Expr = tuple[Union[str, float, "Expr"], ...]

ONE: Expr = ("const", 1.0)
ZERO: Expr = ("const", 0.0)

# Node kinds are read with ASTNode's predicates (isNumber, isName, isOperator/getCharacter, isFunction/
# getName), never getType(): once libsedml or libcombine is imported beside libsbml, getType() returns an
# opaque SWIG pointer that compares equal to nothing (tests/test_sbml_math_clash.py).
_BINARY = {"+", "-", "*", "/"}
_FUNCTIONS = {"exp": "exp", "ln": "ln", "root": "sqrt"}


@dataclass(frozen=True)
class Term:
    """One term of one state's equation (see the module docstring).

    Attributes:
        state: Index of the state the term enters.
        kind: ``p`` (inflow ``c g s``), ``q`` (loss rate ``c g``), ``b`` (quadratic loss ``c``) or
            ``sat`` (saturable loss, ``c`` = V and ``km`` = K).
        const: Product of parameters and numbers.
        gate: Index into :attr:`GermlineTable.gates`, or -1.
        source: Index of the state the inflow reads, or -1.
        reaction: The reaction it comes from.
        km: Half-saturation of a ``sat`` term.
    """

    state: int
    kind: str
    const: Expr
    gate: int
    source: int
    reaction: str
    km: Expr | None = None


@dataclass(frozen=True)
class GermlineTable:
    """The germ line of a model, read from its SBML (see the module docstring).

    Attributes:
        species: Integrated states, head first, then the chain in cascade order.
        head: The head states (the split exact path records them from its core).
        derived: Conserved partners not integrated: derived species -> (integrated partner, total id).
        ledgers: Germ-line species that nothing reads (not integrated).
        inputs: Core signals read, in order of first use.
        parameters: Parameter ids the table reads (totals of conserved pairs included).
        gates: Time-varying factors (functions of inputs and head states).
        terms: Every term of every state's equation.
        schemes: Per state: ``linear``, ``logistic`` or ``saturable``.
        fast_inputs: Indices of the fast inputs in :attr:`inputs` (one per focus class; empty if none).
        substepped: States whose equations read a fast input (the sub-stepped block, contiguous).
        observables: Assignment rules that read germ-line states, inlined, by id.
        observable_states: The states each observable reads.
        reactions: Every reaction that changes a germ-line species -> the states it enters.
        sbml_hash: Hash of the SBML it was read from.
    """

    species: tuple[str, ...]
    head: tuple[str, ...]
    derived: dict[str, tuple[str, str]]
    ledgers: tuple[str, ...]
    inputs: tuple[str, ...]
    parameters: tuple[str, ...]
    gates: tuple[Expr, ...]
    terms: tuple[Term, ...]
    schemes: tuple[str, ...]
    fast_inputs: tuple[int, ...]
    substepped: tuple[int, ...]
    observables: dict[str, Expr]
    observable_states: dict[str, frozenset[str]]
    reactions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sbml_hash: str = ""

    @property
    def fast_input(self) -> int:
        """Index of the first fast input in :attr:`inputs` (the only one with one class), or -1."""
        return self.fast_inputs[0] if self.fast_inputs else -1

    @property
    def chain(self) -> tuple[str, ...]:
        """The states after the head (stem cells to cauda)."""
        return self.species[len(self.head) :]

    def totals(self, amounts: dict[str, float]) -> dict[str, float]:
        """Return the conserved totals (``TJ_total``) from species amounts."""
        return {total: amounts[d] + amounts[p] for d, (p, total) in self.derived.items()}

    def terms_of(self, species: str, kind: str | None = None) -> list[Term]:
        """Return the terms of one state's equation (of one kind, or all)."""
        k = self.species.index(species)
        return [t for t in self.terms if t.state == k and (kind is None or t.kind == kind)]


# ------------------------------------------------------------------ expressions


def names_in(e: Expr, kind: str) -> set[str]:
    """Return the ids of one leaf kind (``param``, ``input``, ``state``) in an expression."""
    if e[0] == kind:
        return {str(e[1])}
    if e[0] in ("const", "param", "input", "state"):
        return set()
    found: set[str] = set()
    for child in e[1:]:
        found |= names_in(child, kind)  # type: ignore[arg-type]
    return found


def is_constant(e: Expr) -> bool:
    """Whether an expression reads parameters and numbers only."""
    return not names_in(e, "input") and not names_in(e, "state")


def add(a: Expr, b: Expr) -> Expr:
    """Return a + b, dropping zeros."""
    return b if a == ZERO else a if b == ZERO else ("+", a, b)


def sub(a: Expr, b: Expr) -> Expr:
    """Return a - b, dropping zeros."""
    return a if b == ZERO else neg(b) if a == ZERO else ("-", a, b)


def mul(a: Expr, b: Expr) -> Expr:
    """Return a * b, dropping ones (zero absorbs)."""
    if a == ZERO or b == ZERO:
        return ZERO
    return b if a == ONE else a if b == ONE else ("*", a, b)


def div(a: Expr, b: Expr) -> Expr:
    """Return a / b, dropping a divisor of one."""
    return ZERO if a == ZERO else a if b == ONE else ("/", a, b)


def neg(a: Expr) -> Expr:
    """Return -a (numbers folded)."""
    if a[0] == "const":
        return ("const", -float(a[1]))  # type: ignore[arg-type]
    return a[1] if a[0] == "neg" else ("neg", a)  # type: ignore[return-value]


# ------------------------------------------------------------------ rational functions of one state

Poly = list[Expr]


def _padd(a: Poly, b: Poly) -> Poly:
    n = max(len(a), len(b))
    return [add(a[i] if i < len(a) else ZERO, b[i] if i < len(b) else ZERO) for i in range(n)]


def _pmul(a: Poly, b: Poly) -> Poly:
    out = [ZERO] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] = add(out[i + j], mul(x, y))
    return out


def _trim(a: Poly) -> Poly:
    while len(a) > 1 and a[-1] == ZERO:
        a = a[:-1]
    return a


def rational(e: Expr, x: str) -> tuple[Poly, Poly]:
    """Return numerator and denominator coefficients (in powers of state ``x``) of an expression.

    Raises:
        UnsupportedRateLawError: If ``x`` enters other than rationally (inside a function or a non-integer power).
    """
    if e == ("state", x):
        return [ZERO, ONE], [ONE]
    if x not in names_in(e, "state"):
        return [e], [ONE]
    op = e[0]
    if op == "neg":
        n, d = rational(e[1], x)  # type: ignore[arg-type]
        return [neg(c) for c in n], d
    if op in ("+", "-", "*", "/"):
        n1, d1 = rational(e[1], x)  # type: ignore[arg-type]
        n2, d2 = rational(e[2], x)  # type: ignore[arg-type]
        if op == "*":
            return _trim(_pmul(n1, n2)), _trim(_pmul(d1, d2))
        if op == "/":
            if len(n2) == 1 and d2 == [ONE]:  # division by an x-free factor: divide each coefficient
                return [div(c, n2[0]) for c in n1], d1
            return _trim(_pmul(n1, d2)), _trim(_pmul(d1, n2))
        if op == "-":
            n2 = [neg(c) for c in n2]
        if d1 == d2:
            return _trim(_padd(n1, n2)), d1
        return _trim(_padd(_pmul(n1, d2), _pmul(n2, d1))), _trim(_pmul(d1, d2))
    if op == "^" and e[2][0] == "const":  # type: ignore[index]
        power = float(e[2][1])  # type: ignore[index,arg-type]
        if power.is_integer() and 0 <= power <= 4:
            n, d = [ONE], [ONE]
            bn, bd = rational(e[1], x)  # type: ignore[arg-type]
            for _ in range(int(power)):
                n, d = _pmul(n, bn), _pmul(d, bd)
            return _trim(n), _trim(d)
    raise UnsupportedRateLawError(f"{x!r} enters through {op!r}")


def factors(e: Expr) -> list[Expr]:
    """Split a product into its factors (a quotient by a constant gives the reciprocal as a factor)."""
    if e[0] == "*":
        return factors(e[1]) + factors(e[2])  # type: ignore[arg-type]
    if e[0] == "neg":
        return [("const", -1.0), *factors(e[1])]  # type: ignore[arg-type]
    if e[0] == "/" and is_constant(e[2]):  # type: ignore[arg-type]
        return [*factors(e[1]), ("/", ONE, e[2])]  # type: ignore[arg-type]
    if e[0] == "/":  # a time-varying quotient: its numerator's constant factors come out
        top = factors(e[1])  # type: ignore[arg-type]
        fixed = [f for f in top if is_constant(f)]
        varying = [f for f in top if not is_constant(f)]
        return [*fixed, ("/", _product(varying), e[2])]
    return [e]


def _product(parts: list[Expr]) -> Expr:
    """The product of factors, left to right, with the numbers multiplied out first (exact: +-1, 2, 4)."""
    number = 1.0
    for p in parts:
        if p[0] == "const":
            number *= float(p[1])  # type: ignore[arg-type]
    out: Expr = ("const", number)
    for p in parts:
        if p[0] != "const":
            out = mul(out, p)
    return out


# ------------------------------------------------------------------ reading the SBML


@dataclass
class _Model:
    doc: libsbml.SBMLDocument
    species: list[str]
    rules: dict[str, libsbml.ASTNode]
    constant: set[str]
    substance_only: dict[str, bool]
    compartment: dict[str, str]
    conversion: dict[str, str | None]
    # reaction id -> (stoichiometry by species, kinetic-law math, local parameter values)
    reactions: dict[str, tuple[dict[str, float], libsbml.ASTNode, dict[str, float]]]
    evented: set[str]


def _read(sbml: str) -> _Model:
    doc = libsbml.readSBMLFromString(sbml)
    model = doc.getModel()
    if model is None:
        raise ModelBuildError("the SBML has no model; cannot read its germ line")
    species = [model.getSpecies(i).getId() for i in range(model.getNumSpecies())]
    rules: dict[str, libsbml.ASTNode] = {}
    varying: set[str] = set()
    for i in range(model.getNumRules()):
        rule = model.getRule(i)
        varying.add(rule.getVariable())
        if rule.isAssignment():
            rules[rule.getVariable()] = rule.getMath()
    evented: set[str] = set()
    for i in range(model.getNumEvents()):
        event = model.getEvent(i)
        for j in range(event.getNumEventAssignments()):
            evented.add(event.getEventAssignment(j).getVariable())
    constant = {
        p.getId()
        for p in (*(model.getParameter(i) for i in range(model.getNumParameters())),)
        if p.getId() not in varying | evented
    }
    constant |= {model.getCompartment(i).getId() for i in range(model.getNumCompartments())}
    default_cf = model.getConversionFactor() or None
    sp = {s: model.getSpecies(s) for s in species}
    reactions = {}
    for i in range(model.getNumReactions()):
        r = model.getReaction(i)
        stoich: dict[str, float] = {}
        for refs, sign in ((r.getListOfReactants(), -1.0), (r.getListOfProducts(), 1.0)):
            for j in range(refs.size()):
                ref = refs.get(j)
                if not ref.getConstant() and ref.getId():
                    raise ModelBuildError(f"reaction {r.getId()!r} has a variable stoichiometry")
                stoich[ref.getSpecies()] = stoich.get(ref.getSpecies(), 0.0) + sign * ref.getStoichiometry()
        law = r.getKineticLaw()
        if law is None or law.getMath() is None:
            raise ModelBuildError(f"reaction {r.getId()!r} has no rate law")
        local = {law.getParameter(j).getId(): law.getParameter(j).getValue() for j in range(law.getNumParameters())}
        for j in range(law.getNumLocalParameters()):
            local[law.getLocalParameter(j).getId()] = law.getLocalParameter(j).getValue()
        reactions[r.getId()] = ({s: v for s, v in stoich.items() if v != 0.0}, law.getMath(), local)
    return _Model(
        doc,
        species,
        rules,
        constant,
        {s: bool(sp[s].getHasOnlySubstanceUnits()) for s in species},
        {s: sp[s].getCompartment() for s in species},
        {s: (sp[s].getConversionFactor() or default_cf) for s in species},
        reactions,
        evented,
    )


def _ast_names(ast: libsbml.ASTNode) -> set[str]:
    found: set[str] = set()
    stack = [ast]
    while stack:
        node = stack.pop()
        if node.isName():
            found.add(node.getName())
        stack.extend(node.getChild(k) for k in range(node.getNumChildren()))
    return found


def _species_read(m: _Model, ast: libsbml.ASTNode, seen: frozenset[str] = frozenset()) -> set[str]:
    """Species an expression reads, through assignment rules."""
    out: set[str] = set()
    for name in _ast_names(ast):
        if name in m.species:
            out.add(name)
        elif name in m.rules and name not in seen:
            out |= _species_read(m, m.rules[name], seen | {name})
    return out


def _conserved_pairs(m: _Model) -> dict[str, str]:
    """Conserved pairs: derived species -> integrated partner (the partner is declared later)."""
    touching: dict[str, list[dict[str, float]]] = {s: [] for s in m.species}
    for stoich, _, _ in m.reactions.values():
        for s in stoich:
            touching[s].append(stoich)
    pairs: dict[str, str] = {}
    for a in m.species:
        partners = {frozenset(st) for st in touching[a]}
        if len(partners) != 1 or a in m.evented:
            continue
        pair = next(iter(partners))
        if len(pair) != 2:
            continue
        (b,) = pair - {a}
        if all(st.get(a, 0.0) == -st.get(b, 0.0) for st in touching[a] + touching[b]) and len(touching[b]) == len(
            touching[a]
        ):
            first, last = sorted((a, b), key=m.species.index)
            pairs[first] = last
    return pairs


def _germ_line(m: _Model, pairs: dict[str, str]) -> tuple[list[str], list[str]]:
    """Return (integrated germ-line species in model order, ledgers)."""
    rep = {s: pairs.get(s, s) for s in m.species}
    deps: dict[str, set[str]] = {rep[s]: set() for s in m.species}
    read_by_anything: set[str] = set()
    for stoich, math, _ in m.reactions.values():
        read = {rep[s] for s in _species_read(m, math)}
        read_by_anything |= _species_read(m, math)
        for s in stoich:
            deps[rep[s]] |= read
    for var, math in m.rules.items():
        read_by_anything |= _species_read(m, math)
        if var in m.species:
            deps[rep[var]] |= {rep[s] for s in _species_read(m, math)}
    # a node is in the core if it lies on a cycle (self-loops aside), is set by an event, or
    # influences such a node
    nodes = list(deps)
    reach: dict[str, set[str]] = {}
    for n in nodes:  # nodes that n depends on, transitively
        seen: set[str] = set()
        stack = list(deps[n])
        while stack:
            d = stack.pop()
            if d not in seen:
                seen.add(d)
                stack.extend(deps[d])
        reach[n] = seen
    core = {n for n in nodes if (n in reach[n] and deps[n] - {n} and any(n in reach[d] for d in deps[n] - {n}))}
    core |= {rep[s] for s in m.evented if s in rep}
    core |= {d for n in list(core) for d in reach[n]}
    free = [s for s in m.species if rep[s] == s and s not in core]
    ledgers = [s for s in free if s not in read_by_anything]
    return [s for s in free if s not in ledgers], ledgers


class _Converter:
    """Turns SBML math into :data:`Expr`, inlining rules that read germ-line species."""

    def __init__(self, m: _Model, germ: set[str], derived: dict[str, tuple[str, str]]) -> None:
        self.m, self.germ, self.derived = m, germ, derived
        self.inputs: list[str] = []
        self.local: dict[str, float] = {}
        self._reads_germ: dict[str, bool] = {}

    def reads_germ(self, rule: str) -> bool:
        """Whether an assignment rule reads germ-line species (then it is inlined)."""
        if rule not in self._reads_germ:
            read = _species_read(self.m, self.m.rules[rule])
            self._reads_germ[rule] = bool(read & (self.germ | set(self.derived)))
        return self._reads_germ[rule]

    def is_constant_rule(self, rule: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether an assignment rule reads constants only (then it is inlined as a constant, e.g. a class's niche)."""
        for name in _ast_names(self.m.rules[rule]):
            if name in self.m.constant or name in self.local:
                continue
            if name in self.m.rules and name not in seen and self.is_constant_rule(name, seen | {rule}):
                continue
            return False
        return True

    def _input(self, name: str) -> Expr:
        if name not in self.inputs:
            self.inputs.append(name)
        return ("input", name)

    def __call__(self, ast: libsbml.ASTNode) -> Expr:
        op = ast.getCharacter() if ast.isOperator() else ""
        function = ast.getName() if ast.isFunction() else ""
        if ast.isNumber():
            return ("const", float(ast.getValue()))
        if ast.isName() and not ast.isConstant():
            return self._name(ast.getName())
        if op in _BINARY and ast.getNumChildren() >= 1:
            kids = [self(ast.getChild(k)) for k in range(ast.getNumChildren())]
            if len(kids) == 1:
                return neg(kids[0]) if op == "-" else kids[0]
            out = kids[0]
            for k in kids[1:]:
                out = (op, out, k)
            return out
        if (op == "^" or function in ("pow", "power")) and ast.getNumChildren() == 2:
            return ("^", self(ast.getChild(0)), self(ast.getChild(1)))
        if function in _FUNCTIONS and ast.getNumChildren() == 1:
            return (_FUNCTIONS[function], self(ast.getChild(0)))
        raise UnsupportedRateLawError(f"{libsbml.formulaToL3String(ast)!r} is outside the kernel's arithmetic")

    def _name(self, name: str) -> Expr:
        m = self.m
        if name in self.local:
            return ("const", self.local[name])
        if name in self.germ:
            state: Expr = ("state", name)
        elif name in self.derived:
            partner, total = self.derived[name]
            state = ("-", ("param", total), ("state", partner))
        elif name in m.rules:
            inline = self.reads_germ(name) or self.is_constant_rule(name)
            return self(m.rules[name]) if inline else self._input(name)
        elif name in m.constant:
            return ("param", name)
        else:
            return self._input(name)  # a core species, or a variable parameter
        if name in m.species and not m.substance_only[name]:
            return ("/", state, ("param", m.compartment[name]))
        return state


def _total_name(a: str, b: str) -> str:
    """Name of a conserved pair's total: their common prefix (``TJ_sealed``, ``TJ_open`` -> ``TJ_total``)."""
    prefix = os.path.commonprefix([a, b]).rstrip("_")
    return f"{prefix}_total" if prefix else f"{a}_{b}_total"


def _topological(species: list[str], reads: dict[str, set[str]], order: list[str]) -> list[str]:
    done: list[str] = []
    left = list(species)
    while left:
        ready = [s for s in left if not (reads[s] - {s}) & set(left)]
        if not ready:
            raise ModelBuildError(f"the germ line has a loop among {sorted(left)}; the compiled paths need a cascade")
        nxt = min(ready, key=order.index)
        done.append(nxt)
        left.remove(nxt)
    return done


def _topological_block(chain: list[str], reads: dict[str, set[str]], order: list[str], block: list[str]) -> list[str]:
    """Return the chain in cascade order with ``block`` kept together (in its own cascade order).

    The block is one node of the ordering that reads what its states read from outside it, placed
    where its first state would go once everything it reads is done.
    """
    members = set(block)
    node = block[0]
    grouped = [s for s in chain if s not in members or s == node]
    outer = {s: {node if r in members else r for r in reads[s]} for s in grouped}
    outer[node] = {r for b in block for r in reads[b] if r not in members}
    out: list[str] = []
    for s in _topological(grouped, outer, order):
        out.extend(block if s == node else [s])
    return out


def _fast_block(gates: list[Expr], terms: list[Term], schemes: list[str]) -> tuple[set[str], tuple[int, ...]]:
    """Return the fast inputs (read by an inflow of a saturable stage) and the states that read one."""
    fast = {
        name
        for t in terms
        if t.kind == "p" and schemes[t.state] == "saturable" and t.gate >= 0
        for name in names_in(gates[t.gate], "input")
    }
    reading = {t.state for t in terms if t.gate >= 0 and names_in(gates[t.gate], "input") & fast}
    return fast, tuple(sorted(reading))


def _unsupported(species: str, reaction: str, why: str) -> UnsupportedRateLawError:
    return UnsupportedRateLawError(
        f"the compiled germ line cannot integrate {species!r}: reaction {reaction!r} {why}; the model was "
        "edited beyond the kernel's form (see ra_model.engines.germline_table); use the whole model "
        "(split=False) or extend the kernel"
    )


@lru_cache(maxsize=8)
def read_germline(sbml: str) -> GermlineTable:
    """Read the germ-line table of a model (cached by SBML text).

    Args:
        sbml: SBML text of the full model.

    Raises:
        ModelBuildError: If the model has no germ line or a germ-line rate law is outside the
            kernel's form (:class:`UnsupportedRateLawError`, naming species and reaction).
    """
    m = _read(sbml)
    pairs = _conserved_pairs(m)
    germ, ledgers = _germ_line(m, pairs)
    derived = {d: (p, _total_name(d, p)) for d, p in pairs.items() if p in germ}
    if not germ:
        raise ModelBuildError("the model has no feed-forward germ line; use the whole model")
    conv = _Converter(m, set(germ), derived)
    # per species: the expressions x_k' = sum nu f_r, as (reaction, factor, f)
    contributions: dict[str, list[tuple[str, Expr, Expr]]] = {s: [] for s in germ}
    reactions: dict[str, tuple[str, ...]] = {}
    for rid, (stoich, math, local) in m.reactions.items():
        touched = [s for s in stoich if s in germ]
        if not touched:
            continue
        conv.local = local
        f = conv(math)
        reactions[rid] = tuple(touched)
        for s in touched:
            cf = m.conversion[s]
            nu: Expr = ("const", stoich[s])
            factor = mul(nu, ("param", cf)) if cf else nu
            contributions[s].append((rid, factor, f))
    reads = {s: set().union(*(names_in(f, "state") for _, _, f in contributions[s])) for s in germ}
    head = [s for s in germ if not (reads[s] - {s})]
    chain = _topological([s for s in germ if s not in head], reads, m.species)

    def build(species: list[str]) -> tuple[list[Expr], list[Term], list[str]]:
        """The gates, terms and schemes with the states in this order."""
        index = {s: k for k, s in enumerate(species)}
        gates: list[Expr] = []
        terms: list[Term] = []

        def gate_of(tv: list[Expr], s: str, rid: str) -> int:
            if not tv:
                return -1
            g = _product(tv)
            if names_in(g, "state") - set(head):
                raise _unsupported(s, rid, "has a time-varying factor that reads a chain state")
            if g not in gates:
                gates.append(g)
            return gates.index(g)

        def split(e: Expr, s: str, rid: str, source_ok: bool) -> tuple[Expr, int, int]:
            parts = factors(e)
            fixed = [p for p in parts if is_constant(p)]
            varying = [p for p in parts if not is_constant(p)]
            source = -1
            if source_ok:
                plain = [p for p in varying if p[0] == "state"]
                for p in plain:
                    if str(p[1]) not in head or len(plain) == 1:
                        source = index[str(p[1])]
                        varying.remove(p)
                        break
            return _product(fixed), gate_of(varying, s, rid), source

        schemes: list[str] = []
        for k, s in enumerate(species):
            for rid, factor, f in contributions[s]:
                try:
                    num, den = rational(f, s)
                except UnsupportedRateLawError as exc:
                    raise _unsupported(s, rid, str(exc)) from exc
                if len(den) == 1:
                    coef = [div(c, den[0]) for c in num]
                    if len(coef) > 3:
                        raise _unsupported(s, rid, "is a polynomial of degree above 2 in it")
                    if coef[0] != ZERO:
                        c, g, src = split(mul(factor, coef[0]), s, rid, source_ok=True)
                        if src >= 0 and src >= k:
                            raise _unsupported(s, rid, "reads a later state")
                        terms.append(Term(k, "p", c, g, src, rid))
                    if len(coef) > 1 and coef[1] != ZERO:
                        c, g, _ = split(neg(mul(factor, coef[1])), s, rid, source_ok=False)
                        terms.append(Term(k, "q", c, g, -1, rid))
                    if len(coef) > 2 and coef[2] != ZERO:
                        quad = neg(mul(factor, coef[2]))
                        if not is_constant(quad):
                            raise _unsupported(s, rid, "has a quadratic loss with a time-varying coefficient")
                        terms.append(Term(k, "b", quad, -1, -1, rid))
                elif len(num) == 2 and num[0] == ZERO and len(den) == 2:
                    vmax, km = div(neg(mul(factor, num[1])), den[1]), div(den[0], den[1])
                    if not (is_constant(vmax) and is_constant(km)):
                        raise _unsupported(s, rid, "is a saturable loss with time-varying coefficients")
                    terms.append(Term(k, "sat", vmax, -1, -1, rid, km))
                else:
                    raise _unsupported(s, rid, "is not linear, logistic or saturable (Michaelis-Menten) in it")
            kinds = [t.kind for t in terms if t.state == k]
            if "b" in kinds:
                if "p" in kinds or "sat" in kinds or kinds.count("b") > 1:
                    raise _unsupported(s, "(several)", "mixes a logistic with inflows or a saturable loss")
                schemes.append("logistic")
            elif "sat" in kinds:
                if kinds.count("sat") > 1:
                    raise _unsupported(s, "(several)", "has more than one saturable loss")
                schemes.append("saturable")
            else:
                schemes.append("linear")

        return gates, terms, schemes

    species = head + chain
    gates, terms, schemes = build(species)
    fast_names, substepped = _fast_block(gates, terms, schemes)
    if substepped and list(substepped) != list(range(substepped[0], substepped[-1] + 1)):
        # several classes: every class's spermatids and the shared caput, integrated together
        block = [species[k] for k in substepped]
        chain = _topological_block(chain, reads, m.species, block)
        species = head + chain
        gates, terms, schemes = build(species)
        fast_names, substepped = _fast_block(gates, terms, schemes)
        if list(substepped) != list(range(substepped[0], substepped[-1] + 1)):
            raise ModelBuildError("the states that read the fast inputs cannot be made consecutive in the cascade")
    used = [names_in(gates[t.gate], "input") for t in sorted(terms, key=lambda t: t.state) if t.gate >= 0]
    inputs = tuple(dict.fromkeys([n for names in used for n in sorted(names)] + conv.inputs))
    fast_inputs = tuple(sorted(inputs.index(name) for name in fast_names))
    fast_gates = {("input", name) for name in fast_names}
    for t in terms:
        if t.state not in substepped:
            continue
        if t.gate >= 0 and gates[t.gate] not in fast_gates:
            raise _unsupported(species[t.state], t.reaction, "reads a fast input other than as a factor")
        inner = t.gate >= 0 or t.source in substepped
        if t.kind == "p" and inner and (t.gate < 0 or t.source not in (-1, *substepped)):
            raise _unsupported(species[t.state], t.reaction, "mixes a fast input with a state outside the sub-steps")
        if schemes[t.state] == "logistic":
            raise _unsupported(species[t.state], t.reaction, "is a sub-stepped logistic")
    for k in substepped:
        loss_gates = {t.gate for t in terms if t.state == k and t.kind == "q" and t.gate >= 0}
        if len(loss_gates) > 1:
            raise _unsupported(species[k], "(several)", "has losses gated by more than one fast input")

    observables: dict[str, Expr] = {}
    observable_states: dict[str, frozenset[str]] = {}
    conv.local = {}
    for var in m.rules:
        if var not in m.species and conv.reads_germ(var):
            e = conv(m.rules[var])
            observables[var] = e
            observable_states[var] = frozenset(names_in(e, "state"))
    inputs = tuple(dict.fromkeys([*inputs, *conv.inputs]))
    parameters: set[str] = set()
    for t in terms:
        parameters |= names_in(t.const, "param") | (names_in(t.km, "param") if t.km else set())
    for e in (*gates, *observables.values()):
        parameters |= names_in(e, "param")
    return GermlineTable(
        species=tuple(species),
        head=tuple(head),
        derived=derived,
        ledgers=tuple(ledgers),
        inputs=inputs,
        parameters=tuple(sorted(parameters)),
        gates=tuple(gates),
        terms=tuple(terms),
        schemes=tuple(schemes),
        fast_inputs=fast_inputs,
        substepped=substepped,
        observables=observables,
        observable_states=observable_states,
        reactions=reactions,
        sbml_hash=hashlib.sha256(sbml.encode("utf-8")).hexdigest()[:16],
    )
