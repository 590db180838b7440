"""Every command and every option of `models-genesis` has help written for a user.

Generated help ("lr factor", "sample every", "scale (release: None)") says nothing a user can act
on: each help text must say what the option does in at least a few words of its own, beyond
the option's name, its default and the tasks it applies to.
"""

import argparse
import re

import pytest

from models_genesis.cli import build_parser

MIN_WORDS = 3


def _subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {action.dest: action.help for action in sub._choices_actions}
    return [(name, helps.get(name), subparser) for name, subparser in sub.choices.items()]


def _options(subparser):
    return [a for a in subparser._actions if not isinstance(a, argparse._HelpAction)]


def help_problem(help_text, dest: str):
    """Why `help_text` of the option `dest` is not written for a user (None when it is)."""
    if not help_text or help_text == argparse.SUPPRESS:
        return "no help"
    own = re.sub(r"\([^()]*\)|\[[^\]]*\]", " ", help_text)  # defaults, release values, tasks
    words = re.findall(r"[A-Za-z][A-Za-z0-9_.+'-]*", own)
    if [w.lower() for w in words] == dest.lower().replace("-", "_").split("_"):
        return "the option's name repeated"
    if len(words) < MIN_WORDS:
        return f"fewer than {MIN_WORDS} words of its own"
    if own.strip().lower().startswith("default"):
        return "only states the default"
    return None


def test_help_problem_catches_generated_help():
    assert help_problem("lr factor (release: 0.5)", "lr_factor") == "the option's name repeated"
    assert help_problem("scale (release: None)", "scale") == "the option's name repeated"
    assert help_problem(None, "seed") == "no help"
    assert help_problem("output folder", "out") == "fewer than 3 words of its own"
    assert help_problem("default: the task's (Table 1)", "batch_size") is not None
    assert help_problem("cubes per training step (release: 6)", "batch_size") is None


def test_help_lists_every_stage():
    parser = build_parser()
    text = parser.format_help()
    commands = _subcommands()
    assert len(commands) >= 11
    for name, _, _ in commands:
        assert name in text


@pytest.mark.parametrize("name", [name for name, _, _ in _subcommands()])
def test_every_command_and_option_has_help_for_a_user(name):
    (command_help, subparser), = [(h, p) for n, h, p in _subcommands() if n == name]
    problems = []
    if help_problem(command_help, name):
        problems.append(f"{name}: {help_problem(command_help, name)}")
    for action in _options(subparser):
        problem = help_problem(action.help, action.dest)
        if problem:
            flag = "/".join(action.option_strings) or action.dest
            problems.append(f"{name} {flag}: {problem} (help: {action.help!r})")
    assert not problems, "\n".join(problems)
