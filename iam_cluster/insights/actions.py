"""Action-item candidates: English sentences that commit, ask or assign someone to a future task.

A sentence scores points for the shapes such sentences take (a person and a future or obligation
modal before an action verb; a request; an imperative; "let's"; task words) and for a deadline,
and loses them for what looks alike but is not a task (past events, hedges such as "I'll be honest",
predictions, counterfactuals, negations). Sentences at or over the threshold are candidates.
"""

from __future__ import annotations

import re

from iam_cluster.insights.keywords import stopwords
from iam_cluster.insights.types import ActionItem, Sentence

#: Languages the rules are written for.
LANGUAGES = frozenset({"en"})

_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)(?:'s)?"
_MONTH = r"(?:january|february|march|april|may|june|july|august|september|october|november|december)"
_ORDINAL = r"(?:\d{1,2}(?:st|nd|rd|th)?|first|second|third|fourth|fifth|tenth|fifteenth|twentieth|thirtieth)"
_WHEN = (rf"(?:{_DAY}|tomorrow|tonight|today|noon|midnight|lunch|eod|eow|cob|the weekend"
         rf"|(?:the )?end of (?:the )?(?:day|week|month|quarter|year|sprint)"
         rf"|(?:this|next) (?:week|month|quarter|sprint|meeting|call|time|{_DAY})"
         rf"|{_MONTH}(?: {_ORDINAL})?|the {_ORDINAL}(?: of {_MONTH})?|\d{{1,2}}(?::\d\d)?\s?(?:am|pm)"
         rf"|(?:the|our) (?:next )?(?:meeting|release|demo|review|launch|deadline|standup|call|retro)"
         rf"|(?:they|we|you|he|she) (?:start|leave|ship|launch|go)|it expires(?: on the {_ORDINAL})?)")
#: A deadline or a time for the task ("by Friday", "before the demo", "next week", "tonight").
DUE = re.compile(
    rf"\b(?:(?:by|before|until|till|no later than|due(?: on)?|on|at|for|in|after) {_WHEN}"
    rf"|first thing(?: tomorrow| in the morning)?|(?:this|tomorrow) (?:morning|afternoon|evening)"
    rf"|(?:tonight|today|tomorrow|this week|next week|over the weekend|after lunch|asap|right away)"
    rf"|in (?:a|one|two|three|\d+) (?:days?|weeks?|hours?))\b")

_PERSON = r"(?:i|we|you|you guys|y'all|he|she|they|someone|somebody|anyone|everyone|everybody|each of us)"
_MODAL = (r"(?:'ll|will|shall|'m going to|am going to|'re going to|are going to|is going to|'s going to"
          r"|'m gonna|'re gonna|gonna|need to|needs to|have to|has to|must|should|can|could"
          r"|plan to|'d like to|would like to|want to|intend to|'m planning to|am planning to)")
#: Verbs after a modal that make talk, not tasks ("I'll be honest", "we'll see", "I have to say").
_HEDGE = (r"(?:be honest|be frank|be brief|tell you|say|admit|see\b|think|guess|bet|never|probably|wonder|love|hate"
          r"|hear|believe|imagine|remember|agree|disagree|like it|enjoy|miss|feel|understand|notice|know\b"
          r"|be (?:\w+ )?(?:busy|fine|happy|glad|late|surprised|good|great|ok|okay|interesting)|not\b|n't)")
_NAME = r"(?<![.!?] )\b[A-Z][a-z]+(?: and (?:I|[A-Z][a-z]+))?"
_NOT_NAMES = frozenset("I The It This That There These Those What Who When Where Why How Next Our Your Their "
                       "My His Her Its We They He She You Yeah Okay So And But Or If Then Well Also Everyone "
                       "Someone Nobody Anyone Friday Monday Tuesday Wednesday Thursday Saturday Sunday".split())
_IMPERATIVE = (r"(?:send|make sure|don't forget to|do not forget to|remember to|check|update|book|schedule|call"
               r"|email|e-mail|ping|review|prepare|set up|draft|fix|share|submit|follow up|reach out|write|create"
               r"|add|remove|move|file|ask|tell|invite|organi[sz]e|arrange|confirm|finish|complete|get|order"
               r"|let me know|keep me posted|loop in|cc|forward|upload|deploy|test|order|contact)")

RULES: list[tuple[str, re.Pattern, float]] = [
    # (kind, pattern on the lower-cased sentence, points)
    ("commitment", re.compile(rf"\b(?:i|we)\s?{_MODAL}(?: (?:just|also|then|all|each|both|definitely|really))?"
                              rf" (?!{_HEDGE})(?:try to |go and |go )?[a-z]"), 1.0),
    ("commitment", re.compile(rf"\blet(?:'s| us)(?: (?:all|each|both|just|also|then|quickly|definitely))?"
                              rf" (?!{_HEDGE}|move on|go back|start with|talk about|wait|hope|keep in mind|take a)"
                              rf"[a-z]"), 1.0),
    ("commitment", re.compile(rf"\blet me (?!{_HEDGE}|ask|explain|just say|finish my|put it|be clear|check if"
                              rf"|get this straight)[a-z]"), 1.0),
    ("commitment", re.compile(r"\b(?:leave it (?:with|to) me|i'm on it|i'll take (?:it|that|care)|"
                              r"i can take care|i'll handle|i'll own|my plan is to|i'll get back to you)\b"), 1.0),
    ("request", re.compile(rf"\b(?:can|could|would|will) {_PERSON}(?: please)? (?!{_HEDGE}|tell me (?:if|what|why|how)"
                           r"|hear|see|believe|imagine|remember|guess|think|know)[a-z]"), 1.0),
    ("request", re.compile(r"\bwould you mind\b|\bplease\b|\bi (?:want|need|'d like) (?:you|everyone|everybody|"
                           r"each of you|someone|somebody)\b|\bi want everyone's\b"), 1.0),
    ("request", re.compile(rf"^(?:(?:okay|ok|so|and|also|oh|yeah|right|then|alright)[, ]+)*{_IMPERATIVE}\b"), 1.0),
    ("assignment", re.compile(rf"\b{_PERSON}\s?{_MODAL} (?!{_HEDGE})(?:try to )?[a-z]"), 0.8),
    ("assignment", re.compile(r"\b(?:action items?|next steps?|to-?dos?|follow[- ]ups?|over to you|owns?|owner"
                              r"|responsible for|in charge of|assign(?:ed)?(?: to)?|take (?:the )?lead)\b"), 1.0),
]
#: A person named before a future or obligation modal ("Ravi will handle", "Mike's going to").
NAMED = re.compile(rf"({_NAME})(?:'s| is| are|)\s?(?:will|'ll|going to|needs to|has to|should|must|'s going to"
                   rf"|is going to|are going to|can) (?!{_HEDGE})[a-z]")
PENALTIES: list[tuple[re.Pattern, float]] = [
    # Past events, counterfactuals and reported speech.
    (re.compile(r"\b(?:yesterday|last (?:week|month|year|time|friday|monday|quarter|night)|ago|already"
                r"|used to|should have|would have|could have|might have|must have|said (?:he|she|they|we|i)"
                r"|if it were|if i were|back then|in (?:19|20)\d\d)\b"), -1.5),
    # Hedges and predictions: nobody takes a task on.
    (re.compile(r"\b(?:probably|maybe|perhaps|might|who knows|at some point|hypothetically|i wonder|i guess"
                r"|it would be nice|would be great if|not sure|according to)\b"), -1.0),
    # Negated tasks.
    (re.compile(r"\b(?:won't|will not|don't need to|do not need to|don't have to|do not have to|no need to|never"
                r"|can't|cannot|shouldn't)\b"), -1.5),
]
_OWNERLESS = {"we", "someone", "somebody", "anyone", "everyone", "everybody", "each of us", "you guys", "y'all"}


def _is_name(word: str) -> bool:
    """A capitalised word that is no common English word (sentence starts are capitalised too)."""
    lower = word.lower()
    return word not in _NOT_NAMES and lower not in stopwords("en") and not re.fullmatch(_IMPERATIVE, lower)


def _normalise(text: str) -> str:
    return " ".join(text.replace("’", "'").replace("‘", "'").split())


def score(text: str) -> tuple[float, str | None, str | None, str | None]:
    """Points for one sentence, with its kind, owner name (when one is named) and deadline phrase."""
    clean = _normalise(text)
    lower = clean.lower()
    points, kind = 0.0, None
    for rule_kind, pattern, weight in RULES:
        if pattern.search(lower):
            points += weight
            kind = kind or rule_kind
    owner = None
    for m in NAMED.finditer(clean):
        if _is_name(m.group(1).split()[0]):
            owner = m.group(1)
            points += 1.0
            kind = "assignment" if kind in (None, "assignment") else kind
            break
    vocative = re.match(r"^([A-Z][a-z]+),\s", clean) or re.search(r",\s([A-Z][a-z]+)[.!?]?$", clean)
    if vocative and _is_name(vocative.group(1)) and kind is not None:
        owner = owner or vocative.group(1)
    due_match = DUE.search(lower)
    due = clean[due_match.start():due_match.end()] if due_match else None
    if points > 0 and due:
        points += 0.5
    if points > 0:
        points += sum(weight for pattern, weight in PENALTIES if pattern.search(lower))
    if points > 0 and lower.endswith("?") and kind != "request":
        points -= 0.5  # "Will the API be ready?" asks, it does not commit
    return points, kind, owner, due


def find_actions(sentences: list[Sentence], threshold: float = 1.0) -> list[ActionItem]:
    """Sentences scoring at least ``threshold``, in spoken order.

    ``owner`` is the speaker for a first-person commitment ("I'll..."), the person named or
    addressed when there is one, else None (a team or anyone).
    """
    out = []
    for s in sentences:
        points, kind, owner, due = score(s.text)
        if points < threshold or kind is None:
            continue
        if owner is None and kind == "commitment" and re.search(r"\b(?:i|i'll|i'm|me|my)\b", s.text.lower()):
            owner = s.speaker
        out.append(ActionItem(start=s.start, end=s.end, speaker=s.speaker, text=s.text, kind=kind,
                              confidence=round(min(1.0, points / 2.5), 3), owner=owner, due=due))
    return out
