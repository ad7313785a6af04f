"""An Ollama ``Modelfile`` for an exported GGUF: FROM, a TEMPLATE translated from the run's chat
template, the stop PARAMETERs and the SYSTEM prompt the data used.

Translation is by observation, not by parsing Jinja: the chat template is rendered on probe
conversations whose contents are unique markers, and the text around the markers gives, for each
role, what comes before and after a message (the "role-block" shape shared by ChatML, Llama 3,
Phi-3, Zephyr and most instruction templates), what the template writes once at the start, and the
system prompt it inserts when the conversation has none. From these pieces a Go template in the
form of Ollama's own templates is written (``.System``, ``range .Messages``, ``$last``). A
template of another shape (system folded into the first user turn, a date inserted, roles renamed)
renders the probes differently from the pieces; it is reported in one sentence and no TEMPLATE is
guessed.

``render_go_template`` is a small renderer for the subset of Go's text/template these templates use
(text, ``{{ .Field }}``, ``if``/``else if``/``else``, ``range $i, $_ := .Messages``, variables,
``eq``/``ne``/``and``/``or``/``not``/``len``/``slice``), with Ollama's values: ``System`` (the system
messages, or the Modelfile's SYSTEM) and ``Messages``. The template parity check renders through
it to prove the TEMPLATE prompts the model as training did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_S1, _U1, _A1, _U2 = "TDKSYSAAA", "TDKUSRBBB", "TDKASTCCC", "TDKUSRDDD"


class TemplateShapeError(ValueError):
    """The chat template is not of the role-block shape this module translates."""


@dataclass
class RoleBlocks:
    begin: str  # written once, before everything (a BOS text such as <|begin_of_text|>)
    pre: dict  # role -> text before the content
    post: dict  # role -> text after the content
    generation: str  # the assistant header added for generation
    default_system: str | None  # inserted by the template when the conversation has no system message

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        out = [self.begin]
        if (not messages or messages[0]["role"] != "system") and self.default_system is not None:
            out.append(self.pre["system"] + self.default_system + self.post["system"])
        for m in messages:
            out.append(self.pre[m["role"]] + m["content"] + self.post[m["role"]])
        if add_generation_prompt:
            out.append(self.generation)
        return "".join(out)


def _between(text: str, a: str | None, b: str | None) -> str:
    start = 0 if a is None else text.index(a) + len(a)
    end = len(text) if b is None else text.index(b, start)
    return text[start:end]


def role_blocks(render) -> RoleBlocks:
    """The pieces of a role-block template; ``render(messages, add_generation_prompt) -> str``."""
    try:
        full = render([{"role": "system", "content": _S1}, {"role": "user", "content": _U1},
                       {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}], True)
        lone = render([{"role": "user", "content": _U1}], False)
        lone_gen = render([{"role": "user", "content": _U1}], True)
        pair = render([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}], False)
    except Exception as exc:  # a template raises what it likes
        raise TemplateShapeError(f"the chat template cannot render a plain conversation ({exc})") from None
    if any(marker not in full for marker in (_S1, _U1, _A1, _U2)):
        raise TemplateShapeError("the chat template drops or rewrites message contents")
    post_user = _between(lone, _U1, None)
    generation = _between(lone_gen, _U1, None)
    if not generation.startswith(post_user):
        raise TemplateShapeError("the generation prompt does not follow the end of a user turn")
    generation = generation[len(post_user):]
    post_asst = _between(pair, _A1, None)
    pre_asst = _between(pair, _U1, _A1)[len(post_user):] if _between(pair, _U1, _A1).startswith(post_user) else None
    between_au = _between(full, _A1, _U2)
    if pre_asst is None or not between_au.startswith(post_asst):
        raise TemplateShapeError("assistant turns are not closed the same way in every position")
    pre_user = between_au[len(post_asst):]
    before_sys = _between(full, None, _S1)
    between_su = _between(full, _S1, _U1)
    if not between_su.endswith(pre_user):
        raise TemplateShapeError("the system message is not a turn of its own")
    post_sys = between_su[:len(between_su) - len(pre_user)]
    guess = pre_user.replace("user", "system")
    if before_sys.endswith(guess):
        begin, pre_sys = before_sys[:len(before_sys) - len(guess)], guess
    else:
        begin, pre_sys = "", before_sys
    head = _between(lone, None, _U1)
    if not head.endswith(pre_user):
        raise TemplateShapeError("the first user turn is written differently from the others")
    head = head[:len(head) - len(pre_user)]
    default_system = None
    if head != begin:
        if not (head.startswith(begin + pre_sys) and head.endswith(post_sys)):
            raise TemplateShapeError("the text before the first message is neither a BOS nor a system turn")
        default_system = head[len(begin + pre_sys):len(head) - len(post_sys)]
    blocks = RoleBlocks(begin, {"system": pre_sys, "user": pre_user, "assistant": pre_asst},
                        {"system": post_sys, "user": post_user, "assistant": post_asst}, generation, default_system)
    for probe, gen in (([{"role": "system", "content": _S1}, {"role": "user", "content": _U1},
                         {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}], True),
                       ([{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}], False)):
        if blocks.render(probe, gen) != render(probe, gen):
            raise TemplateShapeError("the chat template is not made of one block per message")
    return blocks


# --------------------------------------------------------------------------------------------
# Go template
# --------------------------------------------------------------------------------------------


def _lit(text: str) -> str:
    """Literal text in a Go template: as is, except that ``{{`` must be written as a string action."""
    if "{{" not in text and "}}" not in text:
        return text
    return "{{ " + '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"' + " }}"


def go_template(blocks: RoleBlocks) -> str:
    """An Ollama TEMPLATE rendering like ``blocks``. No trim markers (``{{-``): they would eat the
    newlines that belong to the chat format."""
    p, q = blocks.pre, blocks.post
    system = f"{_lit(p['system'])}{{{{ .System }}}}{_lit(q['system'])}"
    if blocks.default_system is not None:
        head = (f"{{{{ if .System }}}}{system}{{{{ else }}}}"
                f"{_lit(p['system'] + blocks.default_system + q['system'])}{{{{ end }}}}")
    else:
        head = f"{{{{ if .System }}}}{system}{{{{ end }}}}"
    body = (
        '{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}'
        f'{{{{ if eq .Role "user" }}}}{_lit(p["user"])}{{{{ .Content }}}}{_lit(q["user"])}'
        f'{{{{ else if eq .Role "assistant" }}}}{_lit(p["assistant"])}{{{{ .Content }}}}'
        f'{{{{ if not $last }}}}{_lit(q["assistant"])}{{{{ end }}}}{{{{ end }}}}'
        f'{{{{ if and $last (ne .Role "assistant") }}}}{_lit(blocks.generation)}{{{{ end }}}}{{{{ end }}}}'
    )
    return _lit(blocks.begin) + head + body


def ollama_values(messages: list[dict], default_system: str | None = None) -> dict:
    """What Ollama hands a template for a chat request: the system messages joined as ``System`` (or
    the Modelfile's SYSTEM when there are none), and the messages."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system or (default_system or ""), "Messages": [
        {"Role": m["role"], "Content": m["content"]} for m in messages]}


# --- a renderer for the subset ------------------------------------------------------------------

_ACTION = re.compile(r'\{\{(-?)\s*((?:"(?:[^"\\]|\\.)*"|[^"])*?)\s*(-?)\}\}', re.S)  # "}}" in a string is text
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+)')


class GoTemplateError(ValueError):
    pass


def _parse(template: str):
    """A tree of ("text", s) | ("out", expr) | ("set", var, expr) | ("if", [(cond, body)], else_body)
    | ("range", ivar, vvar, expr, body)."""
    pieces, pos = [], 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1) == "-":
            text = text.rstrip()
        if pieces and pieces[-1][0] == "trim":
            pieces.pop()
            text = text.lstrip()
        pieces.append(("text", text))
        pieces.append(("act", m.group(2).strip()))
        if m.group(3) == "-":
            pieces.append(("trim",))
        pos = m.end()
    tail = template[pos:]
    if pieces and pieces[-1][0] == "trim":
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(("text", tail))

    def block(i: int, stop: tuple[str, ...]):
        body = []
        while i < len(pieces):
            kind = pieces[i][0]
            if kind == "text":
                if pieces[i][1]:
                    body.append(("text", pieces[i][1]))
                i += 1
                continue
            act = pieces[i][1]
            word = act.split(None, 1)[0] if act else ""
            if word in ("end", "else") and stop:
                return body, i
            if word == "if":
                branches, cond = [], act[2:].strip()
                while True:
                    inner, i = block(i + 1, ("end", "else"))
                    branches.append((cond, inner))
                    act = pieces[i][1]
                    if act.startswith("else if"):
                        cond = act[len("else if"):].strip()
                        continue
                    if act == "else":
                        other, i = block(i + 1, ("end",))
                        body.append(("if", branches, other))
                    else:
                        body.append(("if", branches, []))
                    i += 1
                    break
                continue
            if word == "range":
                m = re.fullmatch(r"range\s+(?:(\$\w*)\s*,\s*(\$\w*)\s*:=\s*)?(.+)", act)
                if not m:
                    raise GoTemplateError(f"unsupported range: {act}")
                inner, i = block(i + 1, ("end",))
                body.append(("range", m.group(1), m.group(2), m.group(3), inner))
                i += 1
                continue
            m = re.fullmatch(r"(\$\w+)\s*:=\s*(.+)", act)
            body.append(("set", m.group(1), m.group(2)) if m else ("out", act))
            i += 1
        if stop:
            raise GoTemplateError("an if or range has no end")
        return body, i

    tree, _ = block(0, ())
    return tree


def _truthy(value) -> bool:
    return bool(value)


def _eval(expr: str, dot, scope: dict, root):
    tokens = _TOKEN.findall(expr)

    def atom(i):
        tok = tokens[i]
        if tok == "(":
            value, i = call(i + 1)
            if tokens[i] != ")":
                raise GoTemplateError(f"unbalanced parentheses in {expr!r}")
            return value, i + 1
        if tok.startswith('"'):
            import json

            return json.loads(tok), i + 1  # Go's escapes in a string literal are JSON's (\\n, \\", \\\\)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok), i + 1
        if tok in ("true", "false"):
            return tok == "true", i + 1
        if tok.startswith("$"):
            name, _, path = tok.partition(".")
            value = root if name == "$" else scope[name]
            for part in filter(None, path.split(".")):
                value = value[part]
            return value, i + 1
        if tok == ".":
            return dot, i + 1
        if tok.startswith("."):
            value = dot
            for part in tok[1:].split("."):
                value = value[part]
            return value, i + 1
        raise GoTemplateError(f"unsupported token {tok!r} in {expr!r}")

    functions = {
        "eq": lambda a, *b: any(a == x for x in b), "ne": lambda a, b: a != b,
        "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
        "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
        "not": lambda a: not _truthy(a), "len": len,
        "slice": lambda x, *ij: x[ij[0]:ij[1]] if len(ij) == 2 else x[ij[0]:] if ij else x,
    }

    def call(i):
        if tokens[i] in functions:
            name, args, i = tokens[i], [], i + 1
            while i < len(tokens) and tokens[i] != ")":
                value, i = atom(i)
                args.append(value)
            return functions[name](*args), i
        return atom(i)

    value, i = call(0)
    if i != len(tokens):
        raise GoTemplateError(f"unsupported expression {expr!r}")
    return value


def _run(tree, dot, scope: dict, root, out: list[str]) -> None:
    for node in tree:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "out":
            value = _eval(node[1], dot, scope, root)
            out.append("" if value is None else str(value))
        elif kind == "set":
            scope[node[1]] = _eval(node[2], dot, scope, root)
        elif kind == "if":
            for cond, body in node[1]:
                if _truthy(_eval(cond, dot, scope, root)):
                    _run(body, dot, dict(scope), root, out)
                    break
            else:
                _run(node[2], dot, dict(scope), root, out)
        elif kind == "range":
            _, ivar, vvar, expr, body = node
            for i, item in enumerate(_eval(expr, dot, scope, root) or []):
                inner = dict(scope)
                if ivar:
                    inner[ivar] = i
                if vvar:
                    inner[vvar] = item
                _run(body, item, inner, root, out)


def render_go_template(template: str, values: dict) -> str:
    out: list[str] = []
    _run(_parse(template), values, {"$": values}, values, out)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Modelfile
# --------------------------------------------------------------------------------------------


def _quoted(text: str) -> str:
    if '"""' in text:
        raise TemplateShapeError('the text contains """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, template: str | None, stops: list[str], system: str | None,
                   note: str | None = None) -> str:
    lines = ["# Written by Tunedeck. Import with: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}"]
    if note:
        lines.append(f"# {note}")
    if template is not None:
        lines.append(f"TEMPLATE {_quoted(template)}")
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    for stop in stops:
        lines.append(f"PARAMETER stop {_json_string(stop)}")
    return "\n".join(lines) + "\n"


def _json_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def read_modelfile(text: str) -> dict:
    """FROM, TEMPLATE, SYSTEM and stop parameters of a Modelfile this module wrote."""
    out: dict = {"stops": []}
    for key in ("TEMPLATE", "SYSTEM"):
        m = re.search(rf'^{key} """(.*?)"""', text, re.S | re.M)
        out[key.lower()] = m.group(1) if m else None
    m = re.search(r"^FROM (.+)$", text, re.M)
    out["from"] = m.group(1).strip() if m else None
    import json

    out["stops"] = [json.loads(s) for s in re.findall(r"^PARAMETER stop (.+)$", text, re.M)]
    return out
