"""Write the demo datasets under resources/demo/ (DEMO DATA, written for this project).

Every text here was written for the BPO workflow demo; none of it is taken from the
real datasets. Each file is in its source's hub format and mixes ordinary records
with the edge cases the parsers must count and drop. Run from anywhere:

    python resources/demo/make_demo.py

The output is deterministic, so re-running it leaves the files unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from bpo.sources.chatbot_arena import MODERATION_CATEGORIES

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- hh-rlhf

# (instruction, chosen answer, rejected answer): single-turn, helpful vs. unhelpful
HH_SINGLE = [
    (
        "What is this dataset?",
        "It is a small demo set written by hand for the BPO workflow project. It copies the format of "
        "Anthropic's hh-rlhf data, but none of its text comes from there.",
        "I don't know.",
    ),
    (
        "How do I boil an egg so the yolk stays soft?",
        "Bring a pot of water to a gentle boil, lower the egg in with a spoon and cook it for six to seven "
        "minutes. Then move it to cold water for a minute so it stops cooking and peels more easily.",
        "Boil it.",
    ),
    (
        "Can you suggest a name for a small bakery?",
        'A few ideas: "Morning Crumb", "The Rolling Pin" or "Golden Crust Bakehouse". A name that hints at '
        "what you bake best, such as sourdough or pastries, helps people remember you.",
        "Bakery.",
    ),
    (
        "What's a good way to remember the order of the planets?",
        'Use a sentence whose words start with the same letters as the planets: "My Very Educated Mother Just '
        'Served Us Nachos" gives Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune.',
        "Just memorize them.",
    ),
    (
        "How can I help my houseplants grow better?",
        "Give them the light their species likes, water only when the top few centimetres of soil are dry, use "
        "pots with drainage holes and feed them lightly in spring and summer.",
        "Water them every day, as much as possible.",
    ),
    (
        "Why is the sky blue?",
        "Sunlight is scattered by the molecules of the air, and short blue wavelengths are scattered much more "
        "than red ones. That scattered blue light reaches your eyes from every direction of the sky.",
        "Because it reflects the colour of the ocean.",
    ),
    (
        "How do I convert Celsius to Fahrenheit?",
        "Multiply the Celsius value by 9/5 and add 32. For example, 20 degrees Celsius is 20 x 9/5 + 32 = 68 "
        "degrees Fahrenheit.",
        "Add 30 to the number.",
    ),
    (
        "Could you help me write a short thank-you note to a coworker?",
        'Sure: "Hi Sam, thank you for staying late to help me finish the report last week. Your notes on the '
        'charts made it much clearer, and I really appreciated it. Lunch is on me next time!"',
        "Thanks.",
    ),
    (
        "What should I pack for a day hike?",
        "Water, snacks, a warm layer and a rain jacket, a map or downloaded route, sunscreen and a hat, a small "
        "first-aid kit and a charged phone. Tell someone where you are going.",
        "Nothing much, just go.",
    ),
    (
        "What is a haiku?",
        "A haiku is a short Japanese poem of three lines with five, seven and five syllables, often about "
        'nature or a season. For example: "Cold morning window / the kettle starts to whistle / steam hides the '
        'garden".',
        "A kind of Japanese food.",
    ),
    (
        "How do I get a coffee stain out of a shirt?",
        "Blot the stain, rinse it from the back with cold water, rub in a little liquid detergent and let it sit "
        "for ten minutes, then wash as usual. Check the stain is gone before using the dryer, since heat sets it.",
        "Use hot water and put it straight in the dryer.",
    ),
    (
        "How can I tell if an avocado is ripe?",
        "Hold it in your palm and squeeze gently: a ripe avocado yields a little without feeling mushy. You can "
        "also flick off the small stem cap; green underneath means it is ready.",
        "Look at it.",
    ),
    (
        "What's the difference between weather and climate?",
        "Weather is what the atmosphere does over hours or days, like today's rain. Climate is the average of "
        "that weather over many years in a region, like a place having mild, wet winters.",
        "They are the same thing.",
    ),
    (
        "Give me a tip for falling asleep faster.",
        "Keep a regular bedtime and put screens away half an hour before it. If you are still awake after about "
        "twenty minutes, get up and read something calm in dim light until you feel sleepy.",
        "Drink a strong coffee before bed.",
    ),
    (
        "How many minutes are in a day?",
        "There are 1,440 minutes in a day: 24 hours times 60 minutes.",
        "About 1,000.",
    ),
    (
        "What does a library card let me do?",
        "Usually it lets you borrow books, films and audiobooks, use the library's computers and Wi-Fi, reserve "
        "items from other branches and access online resources such as e-books from home.",
        "Enter the building.",
    ),
    (
        "How should I store fresh herbs?",
        "Treat soft herbs like basil or parsley as flowers: trim the stems and keep them in a glass of water. "
        "Wrap hardy herbs like rosemary or thyme in a damp paper towel and keep them in the fridge.",
        "In the freezer, always.",
    ),
]

# (earlier turns, last human turn, chosen answer, rejected answer)
HH_MULTI = [
    (
        [("I want to start running.", "That's great! How much running have you done before?")],
        "Almost none. How should I begin?",
        "Start with walk-run intervals: one minute of easy running, two minutes of walking, repeated for twenty "
        "minutes, three times a week. Add a little more running each week.",
        "Run ten kilometres every day from tomorrow.",
    ),
    (
        [("What's a good book for a long flight?", "Do you prefer fiction or non-fiction?")],
        "Fiction, something light.",
        "A light, funny novel works well on a plane: look for a cosy mystery or a comic adventure with short "
        "chapters, so it is easy to pick up again after a nap.",
        "Any book is fine.",
    ),
    (
        [
            ("I need a gift for my sister.", "What does she enjoy doing?"),
            ("She loves gardening.", "Does she garden indoors or outdoors?"),
        ],
        "Outdoors, she has a big vegetable patch.",
        "Good gloves and a sturdy hand trowel, a set of unusual seeds such as heirloom tomatoes, or a kneeling "
        "pad would all be useful for a vegetable garden.",
        "Buy her socks.",
    ),
    (
        [("Can you help me plan a dinner?", "Of course. How many people, and any dietary needs?")],
        "Six people, one of them vegetarian.",
        "Make a main that is vegetarian for everyone, such as a vegetable lasagne, with a green salad and garlic "
        "bread, and finish with a fruit crumble. Nobody has to eat a separate meal.",
        "Just order pizza.",
    ),
]


def _dialogue(turns: list[tuple[str, str]], last_human: str, answer: str) -> str:
    text = "".join(f"\n\nHuman: {h}\n\nAssistant: {a}" for h, a in turns)
    return f"{text}\n\nHuman: {last_human}\n\nAssistant: {answer}"


def hh_rlhf() -> list[dict]:
    rows = [{"chosen": _dialogue([], q, good), "rejected": _dialogue([], q, bad)} for q, good, bad in HH_SINGLE]
    rows += [{"chosen": _dialogue(t, q, good), "rejected": _dialogue(t, q, bad)} for t, q, good, bad in HH_MULTI]
    rows += [
        # broken markup: no Assistant turn at all
        {"chosen": "\n\nHuman: Tell me a joke about cats.", "rejected": "\n\nHuman: Tell me a joke about cats."},
        # broken markup: text before the first Human turn
        {
            "chosen": "Transcript\n\nHuman: Name a fruit.\n\nAssistant: An apple.",
            "rejected": "Transcript\n\nHuman: Name a fruit.\n\nAssistant: A chair.",
        },
        # broken markup: two Assistant turns in a row
        {
            "chosen": "\n\nHuman: Hi!\n\nAssistant: Hello!\n\nAssistant: How can I help?",
            "rejected": "\n\nHuman: Hi!\n\nAssistant: Hello!\n\nAssistant: Go away.",
        },
        # the dialogues differ before the last turn
        {
            "chosen": "\n\nHuman: How tall is Mount Everest?\n\nAssistant: About 8,849 metres.",
            "rejected": "\n\nHuman: How tall is K2?\n\nAssistant: About 8,849 metres.",
        },
        # empty last answer
        {
            "chosen": "\n\nHuman: Name a primary colour.\n\nAssistant: Red.",
            "rejected": "\n\nHuman: Name a primary colour.\n\nAssistant:",
        },
        # whitespace-only instruction
        {
            "chosen": "\n\nHuman:    \n\nAssistant: Hello! How can I help you today?",
            "rejected": "\n\nHuman:    \n\nAssistant: What?",
        },
        # both answers the same
        {
            "chosen": "\n\nHuman: What is 2 + 2?\n\nAssistant: 4.",
            "rejected": "\n\nHuman: What is 2 + 2?\n\nAssistant: 4.",
        },
        # over-long answer (longer than pairs.max_response_chars = 8000 by default)
        {
            "chosen": _dialogue([], "Describe a sunset.", "The sun sinks slowly and the clouds turn orange. " * 200),
            "rejected": _dialogue([], "Describe a sunset.", "It gets dark."),
        },
        # missing field
        {"chosen": _dialogue([], "What is the capital of France?", "Paris.")},
        # wrong type
        {"chosen": 42, "rejected": _dialogue([], "Pick a number.", "Seven.")},
        # exact duplicate of the second row
        {"chosen": _dialogue([], *HH_SINGLE[1][:2]), "rejected": _dialogue([], HH_SINGLE[1][0], HH_SINGLE[1][2])},
    ]
    return rows


# ---------------------------------------------------------------- oasst1

_TOX = ("toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")


class _Oasst:
    """Builds oasst1 message rows in depth-first tree order."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.n = 0

    def msg(self, text, role, parent=None, tree=None, lang="en", rank=None, deleted=False, review=True, **kw):
        self.n += 1
        mid = f"demo-oasst-msg-{self.n:04d}"
        row = {
            "message_id": mid,
            "parent_id": parent,
            "user_id": f"demo-user-{(self.n * 7) % 23:02d}",
            "created_date": f"2023-02-{1 + self.n % 27:02d}T{self.n % 24:02d}:15:00.000000+00:00",
            "text": text,
            "role": role,
            "lang": lang,
            "review_count": 0 if review is None else 3,
            "review_result": review,
            "deleted": deleted,
            "rank": rank,
            "synthetic": False,
            "model_name": None,
            "detoxify": None
            if self.n % 5 == 0
            else {k: round(0.0001 * (1 + (self.n + i) % 9), 6) for i, k in enumerate(_TOX)},
            "message_tree_id": tree or mid,
            "tree_state": "ready_for_export",
            "emojis": None if self.n % 4 == 0 else {"name": ["+1", "-1"], "count": [2 + self.n % 5, self.n % 2]},
            "labels": {"name": ["spam", "quality"], "value": [0.0, 0.5 + (self.n % 5) / 10], "count": [3, 3]},
        }
        row.update(kw)
        self.rows.append(row)
        return mid

    def tree(self, prompt, replies, lang="en", deleted=False, review=True):
        """A root prompt and its ranked replies: replies = [(text, rank, deleted, review), ...]."""
        root = self.msg(prompt, "prompter", lang=lang, deleted=deleted, review=review)
        ids = [
            self.msg(text, "assistant", parent=root, tree=root, lang=lang, rank=rank, deleted=d, review=r)
            for text, rank, d, r in replies
        ]
        return root, ids


def _ok(text, rank):
    return (text, rank, False, True)


OASST_TREES = [
    (
        "What is this dataset?",
        [
            _ok(
                "A small demo set of OpenAssistant-style message trees, written by hand for the BPO workflow "
                "project. None of it comes from the real oasst1 data.",
                0,
            ),
            _ok("Some messages.", 1),
        ],
    ),
    (
        "How do I make a good cup of green tea?",
        [
            _ok(
                "Use water that has cooled to about 80 degrees Celsius, not boiling, and steep the leaves for two "
                "to three minutes. Hotter water or longer steeping makes it bitter.",
                0,
            ),
            _ok("Boil the leaves for ten minutes so it gets strong.", 1),
        ],
    ),
    (
        "Explain what a prime number is.",
        [
            _ok(
                "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, "
                "3, 5, 7 and 11. Numbers like 6 = 2 x 3 are not prime.",
                0,
            ),
            _ok("A prime number is an odd number.", 2),
            _ok("Prime numbers are numbers you can divide by 1.", 1),
        ],
    ),
    (
        "Can you give me three tips for a job interview?",
        [
            _ok(
                "Research the company so you can say why you want to work there, prepare short stories that show "
                "your skills, and have two or three questions ready for the interviewer.",
                0,
            ),
            _ok("Be yourself.", 1),
        ],
    ),
    (
        "What is the difference between a virus and a bacterium?",
        [
            _ok(
                "Bacteria are single-celled living organisms that can reproduce on their own; many are harmless. "
                "Viruses are much smaller, are not cells, and can only multiply inside the cells of a host.",
                0,
            ),
            _ok("There is no difference, both are germs.", 1),
        ],
    ),
    (
        "Write a two-line poem about autumn.",
        [
            _ok("Red leaves let go without a sound,\nand lay a quilt upon the ground.", 0),
            _ok("Autumn is a season.", 1),
        ],
    ),
    (
        "How do I center a div in CSS?",
        [
            _ok(
                "Make the parent a flex container: `display: flex; justify-content: center; align-items: center;`. "
                "The child div is then centred both horizontally and vertically.",
                0,
            ),
            _ok("Use <center> tags.", 1),
        ],
    ),
    (
        "Why do cats purr?",
        [
            _ok(
                "Cats purr when they are content, but also when stressed or hurt; it seems to calm them. The sound "
                "comes from rapid twitching of the muscles of the larynx as they breathe in and out.",
                0,
            ),
            _ok("Cats purr because they are engines.", 1),
        ],
    ),
    (
        "What are some good habits for saving money?",
        [
            _ok(
                "Move a fixed amount to savings on payday before you can spend it, track where your money goes for "
                "a month, cancel subscriptions you do not use and wait a day before non-essential purchases.",
                0,
            ),
            _ok("Never buy anything.", 1),
        ],
    ),
    (
        "How does a rainbow form?",
        [
            _ok(
                "Sunlight enters raindrops, bends, reflects off the back of the drop and bends again on the way "
                "out. Each colour bends by a slightly different amount, so the light spreads into a band of colours.",
                0,
            ),
            _ok("Rainbows are painted by the clouds.", 1),
        ],
    ),
    (
        "Suggest a simple stretching routine for the morning.",
        [
            _ok(
                "Try five minutes: neck rolls, shoulder circles, a standing side stretch on each side, a forward "
                "fold with soft knees and a calf stretch against a wall. Hold each for about 20 seconds.",
                0,
            ),
            _ok("Touch your toes once.", 1),
        ],
    ),
    (
        "What is photosynthesis?",
        [
            _ok(
                "Photosynthesis is how plants make food: using energy from light, they turn carbon dioxide and "
                "water into sugar and release oxygen. It happens mainly in the chloroplasts of leaves.",
                0,
            ),
            _ok("It is when plants sleep at night.", 1),
        ],
    ),
]


def oasst1() -> list[dict]:
    b = _Oasst()
    for k, (prompt, replies) in enumerate(OASST_TREES):
        root, ids = b.tree(prompt, replies)
        if k == 1:
            # a follow-up under the best reply: kept only with multi_turn
            follow = b.msg("Can I add milk to it?", "prompter", parent=ids[0], tree=root)
            b.msg(
                "You can, but green tea is usually drunk plain; milk hides its light, grassy taste.",
                "assistant",
                parent=follow,
                tree=root,
                rank=0,
            )
            b.msg("No, milk is forbidden.", "assistant", parent=follow, tree=root, rank=1)
        if k == 2:
            # a follow-up under a deleted reply: its thread is unusable even with multi_turn
            gone = b.msg("Primes are numbers like 1, 4 and 9.", "assistant", parent=root, tree=root, deleted=True)
            follow = b.msg("Is 1 a prime number?", "prompter", parent=gone, tree=root)
            b.msg(
                "No: a prime needs exactly two divisors, and 1 has only one.",
                "assistant",
                parent=follow,
                tree=root,
                rank=0,
            )
            b.msg("Yes.", "assistant", parent=follow, tree=root, rank=1)
    # the best reply was deleted: the pair uses the remaining ranks
    b.tree(
        "Recommend a board game for four players.",
        [
            ("Monopoly, obviously, and play until everyone gives up.", 0, True, True),
            _ok(
                "Ticket to Ride is easy to learn, takes about an hour and works well with four players who enjoy "
                "planning routes across a map.",
                1,
            ),
            _ok("Chess.", 2),
        ],
    )
    # one reply failed review, one is unranked: still two ranked replies left
    b.tree(
        "How many legs does a spider have?",
        [
            _ok("Spiders have eight legs; that is one of the ways to tell them apart from insects, which have six.", 0),
            ("Spiders have six legs.", None, False, False),
            _ok("Lots.", 1),
            ("Eight or so.", None, False, True),
        ],
    )
    # replies without ranks: no pair
    b.tree("What is the capital of Australia?", [_ok("Canberra.", None), _ok("Sydney.", None)])
    # one ranked reply only: no pair
    b.tree("Name a famous painter.", [_ok("Claude Monet, known for his water lilies.", 0)])
    # deleted prompt
    b.tree(
        "Tell me about the moon.",
        [_ok("The Moon is Earth's only natural satellite.", 0), _ok("It is cheese.", 1)],
        deleted=True,
    )
    # prompt not reviewed yet
    b.tree(
        "What is a verb?", [_ok("A word for an action or state, like run or be.", 0), _ok("A noun.", 1)], review=None
    )
    # non-English prompts
    b.tree(
        "¿Cuál es la capital de España?",
        [_ok("La capital de España es Madrid.", 0), _ok("Barcelona.", 1)],
        lang="es",
    )
    b.tree(
        "Wie viele Tage hat ein Schaltjahr?",
        [_ok("Ein Schaltjahr hat 366 Tage.", 0), _ok("365 Tage.", 1)],
        lang="de",
    )
    # a malformed message: role missing
    b.msg("This message has no role.", None)
    # more languages (after every earlier row, so their ids are unchanged): pairs in six languages,
    # and with sources.oasst1.test_trees a multilingual test set of the held-out trees' roots
    for lang, prompt, good, bad in OASST_MULTILINGUAL:
        b.tree(prompt, [_ok(good, 0), _ok(bad, 1)], lang=lang)
    return b.rows


# (lang, prompt, best reply, worst reply): written for this demo
OASST_MULTILINGUAL = [
    (
        "fr",
        "Quelle est la différence entre le climat et la météo ?",
        "La météo décrit le temps qu'il fait sur quelques jours ; le climat en est la moyenne sur trente ans ou plus.",
        "Aucune.",
    ),
    (
        "fr",
        "Donne-moi trois idées de repas rapides pour un soir de semaine.",
        "Une omelette aux légumes, des pâtes au pesto avec des tomates cerises, ou une soupe de lentilles corail.",
        "Des pâtes.",
    ),
    (
        "fr",
        "Comment puis-je mieux dormir quand je suis stressé ?",
        "Gardez des horaires réguliers, évitez les écrans une heure avant le coucher et notez vos soucis sur papier.",
        "Dormez plus.",
    ),
    (
        "zh",
        "请解释一下光合作用是如何进行的。",
        "植物利用阳光、水和二氧化碳，在叶绿体中合成葡萄糖，同时释放出氧气。",
        "不知道。",
    ),
    (
        "zh",
        "推荐三本适合初学者的编程书。",
        "可以从《Python编程：从入门到实践》开始，再读《算法图解》，然后是《代码整洁之道》。",
        "随便一本。",
    ),
    ("zh", "如何提高学习外语的效率？", "每天坚持听和说，用外语记日记，并且尽量找机会和母语者交流。", "多学。"),
    (
        "ja",
        "日本でおすすめの秋の旅行先を教えてください。",
        "京都の紅葉、日光のいろは坂、北海道の大雪山が秋の旅行先として人気です。",
        "どこでも。",
    ),
    (
        "ja",
        "パソコンのバックアップの取り方を説明してください。",
        "外付けドライブやクラウドに、大切なファイルを定期的に自動でコピーする設定をしましょう。",
        "しません。",
    ),
    (
        "ru",
        "Как работает фотосинтез у растений?",
        "Растения используют энергию солнца, воду и углекислый газ, чтобы создавать сахар и выделять кислород.",
        "Никак.",
    ),
    (
        "ru",
        "Посоветуй хорошую книгу для чтения летом.",
        "Попробуйте «Мастера и Маргариту» Булгакова: это смешная, странная и глубокая книга.",
        "Любую.",
    ),
    (
        "ru",
        "Как быстро выучить таблицу умножения?",
        "Учите по одному столбику в день, ищите закономерности и повторяйте вслух с карточками.",
        "Выучи.",
    ),
    (
        "es",
        "¿Cómo puedo ahorrar dinero en el supermercado?",
        "Haz una lista antes de salir, compara el precio por kilo y evita comprar con hambre.",
        "No compres.",
    ),
    (
        "es",
        "Escribe un consejo para aprender a tocar la guitarra.",
        "Practica quince minutos cada día con acordes sencillos antes de intentar canciones completas.",
        "Toca.",
    ),
    (
        "de",
        "Wie kann ich meine Zeit besser einteilen, wenn ich studiere und arbeite?",
        "Plane die Woche im Voraus, setze feste Lernblöcke und gönn dir bewusst Pausen.",
        "Gar nicht.",
    ),
]


# ---------------------------------------------------------------- Chatbot Arena (synthetic)

_CATS = MODERATION_CATEGORIES  # the dataset's own categories, as the reader declares them
_MODELS = [
    "vicuna-13b",
    "gpt-3.5-turbo",
    "claude-v1",
    "koala-13b",
    "alpaca-13b",
    "chatglm-6b",
    "llama-13b",
    "oasst-pythia-12b",
    "fastchat-t5-3b",
    "dolly-v2-12b",
    "stablelm-tuned-alpha-7b",
    "gpt-4",
]

# (question, answer of the winner, answer of the loser)
ARENA_SINGLE = [
    (
        "What is this dataset?",
        "A synthetic demo in the schema of the Chatbot Arena conversations, written by hand "
        "for the BPO workflow project. No row comes from the real, gated dataset.",
        "A dataset.",
    ),
    ("Give me a synonym for 'happy'.", "Some synonyms: cheerful, joyful, content, glad.", "Sad."),
    (
        "Summarise the plot of Cinderella in one sentence.",
        "A kind young woman mistreated by her stepfamily goes to "
        "a royal ball with the help of her fairy godmother, loses a glass slipper, and is found and married by the "
        "prince.",
        "A girl loses a shoe.",
    ),
    ("What is 15% of 80?", "15% of 80 is 12, because 0.15 x 80 = 12.", "15% of 80 is 8."),
    (
        "Write a Python function that reverses a string.",
        "def reverse(s):\n    return s[::-1]\n\nSlicing with a step of -1 walks the string backwards.",
        "Use the reverse() method on the string.",
    ),
    (
        "Which is bigger, a kilometre or a mile?",
        "A mile is bigger: one mile is about 1.61 kilometres.",
        "A kilometre is bigger.",
    ),
    ("Suggest a name for a pet goldfish.", "How about Bubbles, Goldie, Captain Fin or Nemo?", "Fish."),
    (
        "How do I say 'thank you' in Japanese?",
        'You say "arigatou" (ありがとう); "arigatou gozaimasu" is more polite.',
        "Thank you is 'sayonara'.",
    ),
    (
        "Explain what an API is to a ten-year-old.",
        "An API is like a waiter in a restaurant: you tell it what you "
        "want, it takes the order to the kitchen (another program) and brings back what you asked for.",
        "API stands for application programming interface.",
    ),
    ("Name three renewable energy sources.", "Solar power, wind power and hydroelectric power.", "Coal, oil, gas."),
    ("What year did humans first land on the Moon?", "1969, with the Apollo 11 mission.", "1975."),
    (
        "Give me an idea for a rainy Sunday afternoon.",
        "Build a blanket fort, make hot chocolate and watch a film marathon, or try baking a new recipe together.",
        "Stay in bed.",
    ),
    ("What does a thermometer measure?", "Temperature: how hot or cold something is.", "Weight."),
    (
        "Write a friendly one-line greeting for a newsletter.",
        "Hello friends, welcome to this month's news, grab a cup of tea and enjoy!",
        "Newsletter.",
    ),
    (
        "What is the boiling point of water at sea level?",
        "100 degrees Celsius, or 212 degrees Fahrenheit.",
        "50 degrees Celsius.",
    ),
    # the same pair as in the hh-rlhf demo: dropped at the merge as a duplicate across sources
    ("How many minutes are in a day?", "There are 1,440 minutes in a day: 24 hours times 60 minutes.", "About 1,000."),
    (
        "Recommend a beginner-friendly programming language.",
        "Python is a good first language: its syntax is "
        "readable, and there are many free tutorials and libraries for almost anything.",
        "Assembly.",
    ),
]


def _moderation(flagged=False, score=0.0001):
    return {
        "categories": {c: False for c in _CATS} | ({"violence": True} if flagged else {}),
        "category_scores": {c: round(score * (1 + i % 3), 6) for i, c in enumerate(_CATS)},
        "flagged": flagged,
    }


def _toxic(roberta=False, t5=False):
    return {
        "roberta-large": {"flagged": roberta, "probability": 0.91 if roberta else 0.002},
        "t5-large": {"flagged": t5, "score": 0.88 if t5 else 0.001},
    }


def _conv(turns):
    out = []
    for user, answer in turns:
        out += [{"content": user, "role": "user"}, {"content": answer, "role": "assistant"}]
    return out


def chatbot_arena() -> list[dict]:
    rows = []

    def row(turns_a, turns_b, winner, language="English", moderation=None, toxic=None, **kw):
        k = len(rows)
        r = {
            "question_id": f"demo-arena-{k + 1:04d}",
            "model_a": _MODELS[k % len(_MODELS)],
            "model_b": _MODELS[(k * 5 + 3) % len(_MODELS)],
            "winner": winner,
            "judge": f"demo_judge_{k % 7:02d}",
            "conversation_a": _conv(turns_a),
            "conversation_b": _conv(turns_b),
            "turn": len(turns_a),
            "anony": k % 3 != 0,
            "language": language,
            "tstamp": 1682000000.0 + 3600.5 * k,
            "openai_moderation": moderation or _moderation(),
            "toxic_chat_tag": toxic or _toxic(),
        }
        r.update(kw)
        rows.append(r)

    for k, (q, good, bad) in enumerate(ARENA_SINGLE):
        if k % 2:
            row([(q, bad)], [(q, good)], "model_b")
        else:
            row([(q, good)], [(q, bad)], "model_a")
    # ties
    row([("Name a colour.", "Blue.")], [("Name a colour.", "Green.")], "tie")
    row([("Say something.", "Something.")], [("Say something.", "Hmm.")], "tie (bothbad)")
    # other languages
    row(
        [
            (
                "¿Qué hora es en Tokio si en Madrid son las 12?",
                "Las 20:00 en invierno y las 19:00 en verano: Tokio "
                "va 8 horas por delante de Madrid, 7 con el horario de verano.",
            )
        ],
        [("¿Qué hora es en Tokio si en Madrid son las 12?", "No lo sé.")],
        "model_a",
        language="Spanish",
    )
    row(
        [("Wie heißt die Hauptstadt von Italien?", "Rom.")],
        [("Wie heißt die Hauptstadt von Italien?", "Mailand.")],
        "model_a",
        language="German",
    )
    # flagged (synthetic flags on harmless text: the filter is what is being shown)
    row(
        [("Write a spooky story opening.", "The old house creaked as the door swung open by itself.")],
        [("Write a spooky story opening.", "Boo.")],
        "model_a",
        moderation=_moderation(flagged=True, score=0.4),
    )
    row(
        [("Tell me a dark joke.", "Why did the skeleton stay home? It had no body to go with.")],
        [("Tell me a dark joke.", "No.")],
        "model_a",
        toxic=_toxic(roberta=True),
    )
    # multi-turn (kept only with multi_turn)
    row(
        [
            ("Plan a picnic menu.", "Sandwiches, fruit salad and lemonade."),
            (
                "Make it vegetarian.",
                "Hummus and roasted-vegetable wraps, a fruit salad, cheese and crackers, and lemonade.",
            ),
        ],
        [("Plan a picnic menu.", "Chicken and chips."), ("Make it vegetarian.", "Chicken without chicken.")],
        "model_a",
    )
    row(
        [("Teach me a word in French.", "Bonjour means hello."), ("And another?", "Merci.")],
        [
            ("Teach me a word in French.", "Bonjour means hello; it is used all day."),
            ("And another?", 'Merci means thank you: "Merci beaucoup" is thank you very much.'),
        ],
        "model_b",
    )
    # malformed: missing conversation, unknown winner, wrong turn order, different questions
    row([("What is a noun?", "A naming word.")], [("What is a noun?", "A verb.")], "model_a", conversation_b=None)
    row([("Count to three.", "1, 2, 3.")], [("Count to three.", "3.")], "model_c")
    row(
        [("Is this ordered?", "No.")],
        [("Is this ordered?", "Yes.")],
        "model_a",
        conversation_a=[{"content": "No.", "role": "assistant"}, {"content": "Is this ordered?", "role": "user"}],
    )
    row([("What is 3 x 3?", "9.")], [("What is 3 x 4?", "12.")], "model_a")
    return rows


# ---------------------------------------------------------------- alpaca-gpt4

# (instruction, input, GPT-4 answer, text-davinci-003 answer)
ALPACA = [
    (
        "What is this dataset?",
        "",
        "A small demo in the Alpaca format, written by hand for the BPO workflow project; "
        "the answers imitate the style of GPT-4 and text-davinci-003 but come from neither.",
        "A dataset.",
    ),
    (
        "Give three tips for staying focused while studying.",
        "",
        "1. Put your phone in another room.\n2. Work in "
        "25-minute blocks with short breaks.\n3. Decide before you start exactly what you want to finish.",
        "Study hard and focus.",
    ),
    (
        "Rewrite the sentence in the passive voice.",
        "The cat chased the mouse.",
        "The mouse was chased by the cat.",
        "The cat was chasing the mouse.",
    ),
    (
        "Classify the following animal as a mammal, bird or reptile.",
        "Penguin",
        "A penguin is a bird: it has feathers and lays eggs, even though it cannot fly.",
        "Mammal.",
    ),
    ("Translate the phrase into French.", "Good morning", '"Good morning" in French is "Bonjour".', "Bonne nuit."),
    (
        "Explain why the following fraction is equivalent to 1/2.",
        "3/6",
        "3/6 equals 1/2 because dividing both the numerator and the denominator by 3 gives 1/2.",
        "Because 3 is half of 6 and 6 is half of 12.",
    ),
    (
        "Generate a creative name for a coffee shop.",
        "",
        '"The Daily Grind": it is about coffee and about the everyday routine a good cup gets you through.',
        "Coffee Shop.",
    ),
    (
        "Describe the water cycle in two sentences.",
        "",
        "Water evaporates from oceans and lakes, rises, cools and "
        "condenses into clouds. It then falls as rain or snow and flows back into rivers, lakes and the sea.",
        "Water goes up and comes down.",
    ),
    (
        "Find the odd one out.",
        "apple, banana, carrot, cherry",
        "Carrot is the odd one out: it is a vegetable, while the others are fruits.",
        "Banana.",
    ),
    (
        "List three benefits of regular exercise.",
        "",
        "Regular exercise strengthens the heart, improves mood and sleep, and helps maintain a healthy weight.",
        "It is good.",
    ),
    ("Convert the time to 24-hour format.", "7:45 pm", "7:45 pm is 19:45 in 24-hour format.", "7:45."),
    (
        "Write a short product description for a reusable water bottle.",
        "",
        "Stay hydrated wherever you go: this "
        "leak-proof steel bottle keeps drinks cold for 24 hours, fits in any bag and replaces hundreds of plastic "
        "bottles.",
        "It is a bottle for water.",
    ),
    (
        "Suggest a title for an article about urban gardening.",
        "",
        '"Green Roofs and Balcony Harvests: Growing Food in the City"',
        "Gardening.",
    ),
    (
        "Identify the verb in the sentence.",
        "She sings every morning.",
        'The verb is "sings".',
        'The verb is "morning".',
    ),
    (
        "Give an example of a renewable resource.",
        "",
        "Solar energy is renewable: the sun will keep shining for "
        "billions of years, and using its light does not use it up.",
        "Oil.",
    ),
]
# only in the GPT-4 file, only in the text-davinci-003 file
ALPACA_GPT4_ONLY = [
    (
        "Name the largest ocean on Earth.",
        "",
        "The Pacific Ocean is the largest, covering about a third of the planet's surface.",
    ),
    (
        "Write a haiku about the sea.",
        "",
        "Grey waves fold and fall / a gull hangs above the foam / salt on the cold wind",
    ),
]
ALPACA_DAVINCI_ONLY = [
    ("What is the chemical symbol for gold?", "", "Au."),
    (
        "Summarise the paragraph.",
        "The meeting was moved to Friday because the room was booked.",
        "The meeting is on Friday.",
    ),
]


def _alpaca(instruction, context, output):
    return {"instruction": instruction, "input": context, "output": output}


def alpaca_files() -> tuple[list[dict], list[dict], list[dict]]:
    gpt4 = [_alpaca(i, c, g) for i, c, g, _ in ALPACA] + [_alpaca(*r) for r in ALPACA_GPT4_ONLY]
    davinci = [_alpaca(i, c, d) for i, c, _, d in reversed(ALPACA)] + [_alpaca(*r) for r in ALPACA_DAVINCI_ONLY]
    gpt4 += [
        # the same answer in both files
        _alpaca("What is 10 divided by 2?", "", "5"),
        # empty GPT-4 answer
        _alpaca("Name a planet.", "", "   "),
        # a repeated key: the first record wins
        _alpaca(*ALPACA[1][:2], "Turn off notifications."),
        # missing output
        {"instruction": "Describe a tree.", "input": ""},
    ]
    davinci += [_alpaca("What is 10 divided by 2?", "", "5"), _alpaca("Name a planet.", "", "Mars.")]
    comparison = [{"instruction": i, "input": c, "output": [g, d]} for i, c, g, d in ALPACA]
    comparison += [
        {"instruction": "Pick a season.", "input": "", "output": ["Spring."]},  # only one answer
        {"instruction": "Name a shape.", "input": "", "output": ["A circle.", "A square.", "A line."]},
        {"instruction": "What is 1 + 1?", "input": "", "output": ["2", "2"]},  # same answers
    ]
    return gpt4, davinci, comparison


# ---------------------------------------------------------------- write


def _jsonl(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _json(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# the files this script owns, relative to resources/demo/
FILES = (
    "hh-rlhf/train.jsonl",
    "oasst1/train.jsonl",
    "chatbot_arena/train.jsonl",
    "alpaca-gpt4/alpaca_gpt4.json",
    "alpaca-gpt4/alpaca_davinci.json",
    "alpaca-gpt4/comparison_gpt4.json",
)


def main(out: Path = HERE) -> None:
    _jsonl(hh_rlhf(), out / "hh-rlhf" / "train.jsonl")
    _jsonl(oasst1(), out / "oasst1" / "train.jsonl")
    _jsonl(chatbot_arena(), out / "chatbot_arena" / "train.jsonl")
    gpt4, davinci, comparison = alpaca_files()
    _json(gpt4, out / "alpaca-gpt4" / "alpaca_gpt4.json")
    _json(davinci, out / "alpaca-gpt4" / "alpaca_davinci.json")
    _json(comparison, out / "alpaca-gpt4" / "comparison_gpt4.json")


if __name__ == "__main__":
    main()
