"""The planted-secret corpus: realistic secrets of many kinds, each in the form people paste
them (a config line, a header, a chat-style note, a connection string), and where they are
placed in pull requests (titles, bodies, commit messages, linked issues, patches).

Every value is generated from a fixed seed, so the corpus is the same on every machine. The
``value`` of a secret is what must never leave the machine: not in a prompt, not in a stored
task, not in an export.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

PLACES = ("title", "body", "commit", "issue", "patch")


@dataclass(frozen=True)
class Secret:
    kind: str
    value: str  # must not leave the machine
    line: str  # the line of text that carries it
    place: str  # one of PLACES


def _gen(rng: random.Random):
    an = string.ascii_letters + string.digits

    def r(n, alphabet=an):
        return "".join(rng.choice(alphabet) for _ in range(n))

    hexd = "0123456789abcdef"
    upper = string.ascii_uppercase + string.digits
    b64 = string.ascii_letters + string.digits + "+/"
    words = ["hunter2", "Summer2024!", "letmein42", "P@ssw0rd", "staging-pw-7", "correcthorse9",
             "admin1234", "qwerty77", "dragon-fly-3", "trustno1", "Winter#2025", "blue42sky"]

    def low_pw():
        return rng.choice(words) + rng.choice(["", str(rng.randint(1, 99))])

    # kind -> (value, line) factories
    kinds = {
        "github_classic": lambda v: (v, f"use token {v} for the release job"),
        "github_fine_grained": lambda v: (v, f"GH_TOKEN={v}"),
        "github_oauth": lambda v: (v, f"oauth token: {v}"),
        "openai_project": lambda v: (v, f'OPENAI_API_KEY="{v}"'),
        "openai_legacy": lambda v: (v, f"client = OpenAI(api_key='{v}')"),
        "anthropic": lambda v: (v, f"ANTHROPIC_API_KEY: {v}"),
        "aws_access_key": lambda v: (v, f"aws_access_key_id = {v}"),
        "aws_secret_key": lambda v: (v, f"aws_secret_access_key = {v}"),
        "slack_bot": lambda v: (v, f"SLACK_BOT_TOKEN={v}"),
        "slack_webhook": lambda v: (v, f"notify {v} on failure"),
        "google_api": lambda v: (v, f"maps key {v}"),
        "stripe": lambda v: (v, f"stripe.api_key = '{v}'"),
        "jwt": lambda v: (v, f"curl -H 'Authorization: Bearer {v}' https://api.example.com/me"),
        "npm": lambda v: (v, f"//registry.npmjs.org/:_authToken={v}"),
        "huggingface": lambda v: (v, f"HF_TOKEN={v} huggingface-cli download x"),
        "gitlab": lambda v: (v, f"git clone https://oauth2:{v}@gitlab.example.com/g/p.git"),
        "sendgrid": lambda v: (v, f"SENDGRID_API_KEY='{v}'"),
        "twilio": lambda v: (v, f"TWILIO_API_KEY = \"{v}\""),
        "pypi": lambda v: (v, f"password = {v}"),
        "private_key": lambda v: (v, "-----BEGIN RSA PRIVATE KEY-----\n" + v
                                  + "\n-----END RSA PRIVATE KEY-----"),
        "url_password": lambda v: (v, f"DATABASE_URL=postgres://app:{v}@db.internal:5432/app"),
        "bearer": lambda v: (v, f"Authorization: Bearer {v}"),
        "basic_auth": lambda v: (v, f"Authorization: Basic {v}"),
        "keyword_prose": lambda v: (v, f"password for staging: {v}"),
        "keyword_env": lambda v: (v, f"DB_PASSWORD={v}"),
        "keyword_words": lambda v: (v, f"the admin passwd is {v}"),
        "keyword_secret": lambda v: (v, f"secret = \"{v}\""),
        "keyword_api_key": lambda v: (v, f"api key for the sandbox: {v}"),
        "mailchimp": lambda v: (v, f"MAILCHIMP_KEY={v}"),
        "telegram": lambda v: (v, f"bot = Bot(token='{v}')"),
        "azure_storage": lambda v: (v, f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={v};"),
        "high_entropy_quoted": lambda v: (v, f'SESSION_SIGNING_SALT = "{v}"'),
        "digitalocean": lambda v: (v, f"DO_TOKEN={v}"),
    }
    values = {
        "github_classic": lambda: "ghp_" + r(36),
        "github_fine_grained": lambda: "github_pat_" + r(22) + "_" + r(59),
        "github_oauth": lambda: "gho_" + r(36),
        "openai_project": lambda: "sk-proj-" + r(48),
        "openai_legacy": lambda: "sk-" + r(48),
        "anthropic": lambda: "sk-ant-api03-" + r(80),
        "aws_access_key": lambda: "AKIA" + r(16, upper),
        "aws_secret_key": lambda: r(40, b64),
        "slack_bot": lambda: "xoxb-" + r(12, string.digits) + "-" + r(12, string.digits) + "-" + r(24),
        "slack_webhook": lambda: "https://hooks.slack.com/services/T" + r(8, upper) + "/B" + r(8, upper) + "/" + r(24),
        "google_api": lambda: "AIza" + r(35),
        "stripe": lambda: "sk_live_" + r(24),
        "jwt": lambda: "eyJ" + r(20) + ".eyJ" + r(30) + "." + r(43),
        "npm": lambda: "npm_" + r(36),
        "huggingface": lambda: "hf_" + r(34),
        "gitlab": lambda: "glpat-" + r(20),
        "sendgrid": lambda: "SG." + r(22) + "." + r(43),
        "twilio": lambda: "SK" + r(32, hexd),
        "pypi": lambda: "pypi-AgEIcHlwaS5vcmc" + r(70),
        "private_key": lambda: "MIIEow" + r(58, b64),
        "url_password": low_pw,
        "bearer": lambda: r(40),
        "basic_auth": lambda: base64.b64encode(f"deploy:{low_pw()}".encode()).decode(),
        "keyword_prose": low_pw,
        "keyword_env": low_pw,
        "keyword_words": low_pw,
        "keyword_secret": low_pw,
        "keyword_api_key": lambda: "sandbox" + str(rng.randint(100, 999)) + "key",
        "mailchimp": lambda: r(32, hexd) + "-us" + str(rng.randint(1, 20)),
        "telegram": lambda: str(rng.randint(10**8, 10**9)) + ":" + r(35),
        "azure_storage": lambda: r(86, b64) + "==",
        "high_entropy_quoted": lambda: r(44, b64),
        "digitalocean": lambda: "dop_v1_" + r(64, hexd),
    }
    return kinds, values


def corpus(copies: int = 3, seed: int = 11) -> list[Secret]:
    """``copies`` secrets of every kind, spread over the places round-robin."""
    rng = random.Random(seed)
    kinds, values = _gen(rng)
    out: list[Secret] = []
    i = 0
    for _ in range(copies):
        for kind, make_line in kinds.items():
            value, line = make_line(values[kind]())
            place = PLACES[i % len(PLACES)]
            if kind == "private_key" and place == "title":
                place = "body"  # a title is one line
            out.append(Secret(kind, value, line, place))
            i += 1
    return out
