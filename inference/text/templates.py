"""Template comments: the generators' fallback, and honest comments for photos without an emotion.

The comment data pairs every comment with an emotion (every one of its 5,394 keyword sets starts
with 분노/슬픔/공포/기쁨), so a generator prompted with objects alone still tends to talk about a
face: "표정이 밝아 보여요" under a photo of a bus. When no face shows an emotion the bot therefore
uses these templates (``training.evaluate_honesty`` measures both ways): they talk about the things
in the photo or the photo itself and never claim an expression or a mood.

Every template is plain text with ``{0}``, ``{1}`` … for object names; :func:`fill` attaches the
right particle (``{0:이}`` → 차가 / 버스가 …) through ``inference.text.josa``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from inference.text.josa import attach_particle
from inference.text.labels import ANGER, EMOTION_KEYWORDS, FEAR, JOY, SADNESS

# A template's object reference: {0} or {0:이} (index, optional particle to attach).
_FIELD = re.compile(r"\{(\d)(?::([^}]+))?\}")

OBJECT_EMOJI: dict[str, str] = {
    "개": "🐶",
    "고양이": "🐱",
    "말": "🐴",
    "새": "🐦",
    "소": "🐮",
    "양": "🐑",
    "차": "🚗",
    "버스": "🚌",
    "기차": "🚆",
    "비행기": "✈️",
    "자전거": "🚲",
    "오토바이": "🏍️",
    "배": "⛵",
    "화분": "🪴",
    "식물": "🌿",
    "나무": "🌳",
    "꽃": "🌸",
    "의자": "🪑",
    "소파": "🛋️",
    "테이블": "🍽️",
    "병": "🍾",
    "모니터": "🖥️",
    "안경": "👓",
}
ANIMALS = frozenset({"개", "고양이", "말", "새", "소", "양", "강아지", "토끼", "오리", "닭"})
VEHICLES = frozenset({"차", "버스", "기차", "비행기", "자전거", "오토바이", "배", "트럭", "밴", "보트"})
PLANTS = frozenset({"화분", "식물", "나무", "꽃", "실내 식물"})

_ANIMAL_LINES = (
    "{0:이} 정말 귀엽네요! 😍",
    "사진 속 {0:이} 너무 사랑스러워요! 💕",
    "{0:을} 이렇게 예쁘게 담으시다니, 보는 내내 미소가 지어져요 🥰",
)
_VEHICLE_LINES = (
    "{0:이} 멋지게 담겼네요! 👍",
    "{0:이} 있는 풍경이 참 근사해요! ✨",
    "{0:을} 이런 구도로 찍으시다니 감각이 대단해요! 📸",
)
_PLANT_LINES = (
    "{0:이} 싱그러워서 사진이 한층 생기 있어 보여요! 🌿",
    "{0} 덕분에 사진에 초록빛이 가득하네요! 💚",
)
_THING_LINES = (
    "{0:이} 눈에 쏙 들어오는 사진이네요! 📸",
    "사진 속 {0:이} 참 멋스러워요! ✨",
    "{0:이} 잘 어우러진 공간이 아늑해 보여요! 🏡",
)
_TWO_THINGS = (
    "{0:와} {1:이} 한 장에 어우러진 장면이 정말 멋져요! ✨",
    "{0:이} 있고 {1:도} 보이는 게 이야기가 담긴 사진 같아요! 📖",
    "{0:와} {1:까지} 함께 담겨서 볼거리가 가득하네요! 👀",
)
_MORE_THINGS = "{0}, {1}, {2:까지} 한 장에 담긴 풍성한 사진이에요! 🌈"
_PHOTO_LINES = (
    "사진 정말 멋져요! ✨",
    "분위기 있는 사진이네요! 📸",
    "색감이 참 예쁜 사진이에요! 🎨",
    "구도가 정말 좋네요! 👍",
    "한 장의 그림 같은 사진이에요! 🖼️",
    "감성 가득한 사진이네요! 💫",
)
_PEOPLE_LINES = (
    "자연스러운 모습이 담긴 멋진 사진이에요! 📸",
    "일상의 한 장면을 멋지게 담으셨네요! ✨",
    "사진 속 모습이 참 보기 좋아요! 😊",
)
_CLOSERS = (
    "오늘도 좋은 하루 보내세요! 🍀",
    "사진 올려 주셔서 고마워요! 💕",
    "다음 사진도 기대할게요! 🙌",
    "덕분에 눈이 즐거워요! 😊",
    "이런 순간을 나눠 주셔서 감사해요! 🌟",
)
# Openers for the generators' fallback, when a face does show an emotion.
_EMOTION_OPENERS: dict[str, tuple[str, ...]] = {
    JOY: ("표정이 정말 환해서 보는 저까지 기분이 좋아져요! 😊", "웃는 모습이 너무 보기 좋아요! 😄"),
    SADNESS: ("조금 울적해 보여도 괜찮아요, 오늘도 충분히 잘하고 있어요 🤗", "토닥토닥, 힘내세요! 💙"),
    FEAR: ("깜짝 놀란 표정이 너무 생생해요! 😲", "무슨 일이 있었던 거예요? 놀란 모습도 귀여워요 😳"),
    ANGER: ("단단히 화난 표정마저 멋있네요! 😤", "화가 나도 멋진 건 숨길 수 없네요 🔥"),
}


def fill(template: str, names: Sequence[str]) -> str:
    """Put object names into ``template`` (``{0:이}`` → ``차가``)."""

    def field(match: re.Match[str]) -> str:
        name = names[int(match.group(1))]
        particle = match.group(2)
        return attach_particle(name, particle) if particle else name

    return _FIELD.sub(field, template)


def _object_line(things: Sequence[str], pick: _Picker) -> str:
    if len(things) >= 3:
        return fill(_MORE_THINGS, things)
    if len(things) == 2:
        return fill(pick(_TWO_THINGS), things)
    thing = things[0]
    lines: tuple[str, ...]
    if thing in ANIMALS:
        lines = _ANIMAL_LINES
    elif thing in VEHICLES:
        lines = _VEHICLE_LINES
    elif thing in PLANTS:
        lines = _PLANT_LINES
    else:
        lines = _THING_LINES
    line = fill(pick(lines), things)
    emoji = OBJECT_EMOJI.get(thing)
    if not emoji or emoji in line:
        return line
    text, _, own_emoji = line.rpartition(" ")  # "자전거가 멋지게 담겼네요! 👍" → "… 🚲👍"
    return f"{text} {emoji}{own_emoji}"


class _Picker:
    """``rng.choice`` when sampling; the first option when deterministic (eval, tests)."""

    def __init__(self, rng: random.Random | None) -> None:
        self.rng = rng

    def __call__(self, options: Sequence[str]) -> str:
        return self.rng.choice(options) if self.rng is not None else options[0]


def honest_comment(things: Sequence[str], has_face: bool, rng: random.Random | None = None) -> str:
    """A comment for a photo where no face shows an emotion: about its things, or the photo itself.

    ``things`` are the object keywords (at most three are named); ``has_face`` says whether a
    (neutral) face was seen, so the comment may mention the people without reading their mood.
    """
    pick = _Picker(rng)
    parts = []
    if has_face:
        parts.append(pick(_PEOPLE_LINES))
    if things:
        parts.append(_object_line(list(things)[:3], pick))
    if not parts:
        parts.append(pick(_PHOTO_LINES))
    parts.append(pick(_CLOSERS))
    return " ".join(parts)


def template_comment(keywords: Sequence[str], rng: random.Random | None = None) -> str:
    """The generators' fallback: a short warm comment from the keywords (emotion first, if any)."""
    emotions = [k for k in keywords if k in EMOTION_KEYWORDS]
    things = [k for k in keywords if k not in EMOTION_KEYWORDS]
    if not emotions:
        return honest_comment(things, has_face=False, rng=rng)
    pick = _Picker(rng)
    parts = [pick(_EMOTION_OPENERS[emotions[0]])]
    if things:
        parts.append(f"{attach_particle(things[0], '이')} 정말 멋져요! 👍")
    if len(things) > 1:
        parts.append(f"{things[1]}도 눈에 띄네요 ✨")
    parts.append(pick(_CLOSERS))
    return " ".join(parts)


# Words that read an expression or a sad / angry / scared mood into a photo. A comment under a photo
# without a face must contain none of them (tests and ``training.evaluate_honesty`` check with it).
MOOD_CLAIM = re.compile(
    "표정|슬프|슬퍼|슬픈|슬픔|우울|울적|속상|눈물|힘내|토닥|화가 ?나|화가 ?난|화났|화난|화내|분노|짜증|성난|"
    "무서|무섭|겁이|겁먹|두려|공포|놀란|놀랐|깜짝|당황|긴장"
)


def claims_mood(text: str) -> bool:
    """True when ``text`` mentions an expression or a sad / angry / scared mood."""
    return MOOD_CLAIM.search(text) is not None


# Beyond the moods: joy, a smile or ease read into the people of the photo ("행복해 보이시네요",
# "웃는 모습"), honest for a face the detector saw as happy, not for a photo of a chair. The viewer's
# own joy ("보는 내내 미소가 지어져요", "기분이 좋아지네요") is fine anywhere (``reads_feeling``).
_CHEER = (
    r"(행복|기뻐|기쁘|즐거워|즐거우|신나|신이 나|편안해|여유로워|설레)(해)? ?(보이|보여|보입|보인)|"
    r"(행복|기쁨|기쁜|즐거운|신난|편안한|여유로운|설레는|밝은) ?(모습|표정|얼굴|미소|웃음)|"
    r"웃는 (모습|얼굴)|웃고 (계|있)|웃으시|미소(가|를|도) ?(예|아름|멋|보기|짓|지으|띠)|미소 짓|"
    r"기분(이)? ?좋(아|으)? ?(보이|보여|보입|신|시)|어떤 기분|기분인지|기분이 어떠|"
    r"기쁘(네|시|신|세|실)|기뻐하|"
    r"(어두운|쓸쓸한|외로운|무거운|긴장된|살벌한) (분위기|모습)|감정"
)
FEELING_CLAIM = re.compile(f"{MOOD_CLAIM.pattern}|{_CHEER}")


def reads_feeling(text: str) -> bool:
    """True when ``text`` reads a feeling into the people of the photo: a mood (``claims_mood``),
    joy, a smile or ease."""
    return FEELING_CLAIM.search(text) is not None
