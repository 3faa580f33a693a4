"""A deterministic sample crawl of our own making: the embedded default input of the pipeline.

`python -m lmlib.web.sample_crawl [--out assets/crawl]` writes three WARC files and a reference set
of high-quality documents. Same seed, same bytes: the test suite regenerates them and compares.

What the crawl holds, so that every later stage has something to do:
- English prose pages (a small grammar over a topic lexicon) inside site navigation, sidebars
  and footers, as real pages are;
- spam and low-quality pages: keyword stuffing, link farms, ellipsis teasers, near-empty pages;
- pages in German, French, Spanish, Russian, Greek, Chinese, Japanese and Arabic;
- exact duplicates and near-duplicates of pages, within one file and across files;
- emails, US phone numbers in several forms and IPv4 addresses inside prose;
- request records, 404 and redirect responses, images, PDF, CSS and JSON payloads;
- pages that declare UTF-8 but are encoded in windows-1252;
- a last file whose final record is cut off mid-gzip-member, as an interrupted download is.

The reference set (quality_reference.jsonl.gz) holds long articles of the same sites as they come
out of extraction: the quality classifier's positives.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from lmlib.formats import QUALITY_REFERENCE_FILE

SEED = 20261121
NUM_FILES = 3
PAGES_PER_FILE = 800
REFERENCE_DOCUMENTS = 300
CRAWL_DATE = "2026-01-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "assets" / "crawl"

TOPICS = {
    "astronomy": (
        "star galaxy telescope comet planet orbit nebula observatory eclipse moon".split(),
        "observed measured charted photographed tracked predicted studied catalogued".split(),
        "distant bright faint massive ancient rotating icy luminous".split(),
    ),
    "gardening": (
        "garden tomato soil seed compost orchard hedge greenhouse root blossom".split(),
        "planted watered pruned harvested grew fertilized sowed mulched".split(),
        "green fertile sunny shaded young hardy fragrant seasonal".split(),
    ),
    "history": (
        "empire treaty castle merchant kingdom archive harbor monastery council dynasty".split(),
        "founded signed defended recorded ruled restored conquered described".split(),
        "medieval royal coastal forgotten powerful northern rival ancient".split(),
    ),
    "cooking": (
        "bread soup kitchen recipe oven spice sauce dough market flavor".split(),
        "baked stirred seasoned roasted simmered tasted prepared served".split(),
        "fresh warm savory crisp golden rich simple traditional".split(),
    ),
    "engineering": (
        "bridge engine circuit turbine sensor pipeline valve motor girder prototype".split(),
        "designed tested assembled calibrated measured repaired replaced inspected".split(),
        "efficient robust electric heavy precise modern reliable compact".split(),
    ),
    "music": (
        "violin orchestra melody rhythm choir concert harmony piano composer album".split(),
        "composed performed recorded arranged rehearsed played conducted sang".split(),
        "gentle lively classical haunting bright slow modern famous".split(),
    ),
    "geology": (
        "mountain glacier volcano river canyon fossil mineral valley sediment crystal".split(),
        "formed eroded shaped deposited uplifted carved exposed buried".split(),
        "steep volcanic layered frozen narrow ancient rugged vast".split(),
    ),
    "medicine": (
        "patient clinic vaccine doctor therapy symptom nurse hospital treatment study".split(),
        "treated examined diagnosed prescribed monitored reviewed improved reported".split(),
        "careful chronic early mild clinical effective rare common".split(),
    ),
}
CONNECTIVES = ["However", "Meanwhile", "In addition", "Later", "As a result", "For example",
               "In the spring", "Over the years", "By contrast", "Eventually"]
PEOPLE = ["the researchers", "a local team", "the workers", "several students", "the council",
          "an old friend", "the visitors", "our editors", "two engineers", "the volunteers"]
PLACES = ["near the river", "in the north", "across the valley", "at the museum",
          "in the city", "on the coast", "during the winter", "after the storm",
          "before the festival", "in a small village"]

FOREIGN = {
    "de": ["Die Stadt liegt am Ufer eines breiten Flusses und ist für ihre alten Brücken bekannt.",
           "Im Sommer kommen viele Besucher, um die historischen Gebäude zu besichtigen.",
           "Die Bibliothek bewahrt wertvolle Handschriften aus dem Mittelalter auf.",
           "Am Wochenende findet auf dem Marktplatz ein großer Bauernmarkt statt.",
           "Die Forscher haben die Ergebnisse ihrer Untersuchung im Herbst veröffentlicht.",
           "Viele Familien verbringen ihre Ferien in den Bergen oder an der Küste."],
    "fr": ["La ville se trouve au bord d'une large rivière et elle est célèbre pour ses ponts.",
           "Chaque été, de nombreux visiteurs viennent découvrir les bâtiments historiques.",
           "La bibliothèque conserve des manuscrits précieux datant du Moyen Âge.",
           "Le marché du samedi propose des fruits, des légumes et des fromages locaux.",
           "Les chercheurs ont publié les résultats de leur étude à l'automne dernier.",
           "Beaucoup de familles passent leurs vacances à la montagne ou à la mer."],
    "es": ["La ciudad está situada a orillas de un río ancho y es famosa por sus puentes.",
           "Cada verano llegan muchos visitantes para conocer los edificios históricos.",
           "La biblioteca guarda manuscritos valiosos de la Edad Media.",
           "El mercado de los sábados ofrece frutas, verduras y quesos de la región.",
           "Los investigadores publicaron los resultados de su estudio el otoño pasado.",
           "Muchas familias pasan sus vacaciones en la montaña o en la playa."],
    "ru": ["Город расположен на берегу широкой реки и известен своими старыми мостами.",
           "Каждое лето сюда приезжает много туристов, чтобы увидеть исторические здания.",
           "В библиотеке хранятся ценные рукописи средних веков.",
           "По субботам на площади работает большой рынок с местными продуктами.",
           "Исследователи опубликовали результаты своей работы прошлой осенью.",
           "Многие семьи проводят отпуск в горах или на море."],
    "el": ["Η πόλη βρίσκεται στην όχθη ενός μεγάλου ποταμού και είναι γνωστή για τις γέφυρές της.",
           "Κάθε καλοκαίρι πολλοί επισκέπτες έρχονται για να δουν τα ιστορικά κτίρια.",
           "Η βιβλιοθήκη φυλάσσει πολύτιμα χειρόγραφα από τον Μεσαίωνα.",
           "Οι ερευνητές δημοσίευσαν τα αποτελέσματα της μελέτης τους το φθινόπωρο.",
           "Πολλές οικογένειες περνούν τις διακοπές τους στα βουνά ή στη θάλασσα."],
    "zh": ["这座城市位于一条宽阔的河流旁边，以古老的桥梁而闻名。",
           "每年夏天都有很多游客来参观这里的历史建筑。",
           "图书馆保存着许多中世纪的珍贵手稿。",
           "研究人员在去年秋天发表了他们的研究结果。",
           "许多家庭喜欢在山区或者海边度过他们的假期。",
           "周末的时候，广场上会有一个很大的农贸市场。"],
    "ja": ["この町は広い川のほとりにあり、古い橋で有名です。",
           "毎年夏になると、多くの観光客が歴史的な建物を見に来ます。",
           "図書館には中世の貴重な写本が保管されています。",
           "研究者たちは去年の秋に調査の結果を発表しました。",
           "多くの家族が山や海で休暇を過ごします。",
           "週末には広場で大きな市場が開かれます。"],
    "ar": ["تقع المدينة على ضفة نهر واسع وهي مشهورة بجسورها القديمة.",
           "في كل صيف يأتي كثير من الزوار لمشاهدة المباني التاريخية.",
           "تحتفظ المكتبة بمخطوطات قيمة من العصور الوسطى.",
           "نشر الباحثون نتائج دراستهم في الخريف الماضي.",
           "تقضي عائلات كثيرة عطلتها في الجبال أو على شاطئ البحر."],
}
SPAM_WORDS = ("cheap best price buy now discount free shipping replica watches casino bonus "
              "win money fast loans pills online deal offer click here limited sale").split()
SITES = [
    ("daily-notes.example.org", ["Home", "News", "Science", "Culture", "About", "Contact"]),
    ("fieldguide.example.com", ["Start", "Guides", "Topics", "Archive", "Shop", "Login"]),
    ("quiet-reader.example.net", ["Front page", "Essays", "Letters", "Subscribe", "Help"]),
    ("townhall.example.org", ["Home", "Services", "Events", "Departments", "Contact us"]),
    ("learn-more.example.com", ["Courses", "Articles", "Community", "Pricing", "Sign in"]),
]
WINDOWS_1252_SENTENCES = [
    "The café on the corner serves a crème brûlée that regulars call “perfect”.",
    "Her naïve façade hid a résumé full of daring work — and a few surprises.",
    "The señor’s piñata was the highlight of the fête, or so everyone said.",
]


class ProseGenerator:
    """English sentences from a small grammar; the same RNG state gives the same text."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def sentence(self, topic: str) -> str:
        nouns, verbs, adjectives = TOPICS[topic]
        r = self.rng
        a, b = r.sample(nouns, 2)
        templates = [
            f"{r.choice(PEOPLE).capitalize()} {r.choice(verbs)} the {r.choice(adjectives)} {a} "
            f"{r.choice(PLACES)}.",
            f"The {r.choice(adjectives)} {a} was {r.choice(verbs)} by {r.choice(PEOPLE)}, who "
            f"later {r.choice(verbs)} a {r.choice(adjectives)} {b}.",
            f"{r.choice(CONNECTIVES)}, the {a} and the {b} were {r.choice(verbs)} "
            f"{r.choice(PLACES)}.",
            f"Few people expected that a {r.choice(adjectives)} {a} could change how we think "
            f"about the {b}.",
            f"{r.choice(PEOPLE).capitalize()} wrote that every {a} tells a story about the "
            f"{r.choice(adjectives)} {b} {r.choice(PLACES)}.",
            f"When the {a} was {r.choice(verbs)}, {r.choice(PEOPLE)} {r.choice(verbs)} the "
            f"{b} as well.",
        ]
        return r.choice(templates)

    def paragraph(self, topic: str, sentences: tuple[int, int] = (3, 6)) -> str:
        return " ".join(self.sentence(topic) for _ in range(self.rng.randint(*sentences)))

    def title(self, topic: str) -> str:
        nouns, _, adjectives = TOPICS[topic]
        return f"The {self.rng.choice(adjectives)} {self.rng.choice(nouns)}".title()


@dataclass
class Page:
    url: str
    status: int
    content_type: str
    body: bytes


def _html(site: tuple[str, list[str]], title: str, paragraphs: list[str], rng: random.Random,
          year: int, charset: str = "utf-8") -> str:
    host, nav = site
    links = "\n".join(f'<li><a href="/{item.lower().replace(" ", "-")}">{item}</a></li>'
                      for item in nav)
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    related = "\n".join(f'<li><a href="/story/{rng.randint(1000, 9999)}">Read more</a></li>'
                        for _ in range(3))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="{charset}">'
        f"<title>{title} | {host}</title></head>\n<body>\n"
        f'<header><nav><ul>{links}</ul></nav></header>\n'
        f"<main><article><h1>{title}</h1>\n{body}\n</article></main>\n"
        f"<aside><h2>Related</h2><ul>{related}</ul></aside>\n"
        f"<footer>Copyright {year} {host}. All rights reserved. Privacy policy. Terms of use."
        f"</footer>\n</body></html>\n"
    )


def _with_pii(text: str, rng: random.Random) -> str:
    name = rng.choice(["john.smith", "m.garcia", "info", "editor", "a.lee"])
    email = f"{name}@{rng.choice(['example.com', 'mail.example.org', 'corp.example.net'])}"
    area, mid, last = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    phone = rng.choice([f"{area}{mid}{last}", f"({area})-{mid}-{last}", f"({area}) {mid} {last}",
                        f"{area}-{mid}-{last}", f"+1 {area}-{mid}-{last}", f"+1 ({area}) {mid} {last}"])
    ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    extra = rng.choice([
        f" For questions write to {email} or call {phone}.",
        f" The server at {ip} was restarted twice. Contact {email} for details.",
        f" Call us at {phone}. Our mirror runs on {ip}.",
    ])
    return text + extra


class SampleCrawl:
    """Builds the pages of all files first, so duplicates can cross file boundaries."""

    def __init__(self, seed: int = SEED):
        self.rng = random.Random(seed)
        self.prose = ProseGenerator(self.rng)
        self.counter = 0

    def _url(self, site: tuple[str, list[str]], kind: str) -> str:
        self.counter += 1
        return f"https://{site[0]}/{kind}/{self.counter:05d}"

    def prose_page(self) -> tuple[Page, dict]:
        r = self.rng
        site = r.choice(SITES)
        topic = r.choice(sorted(TOPICS))
        title = self.prose.title(topic)
        paragraphs = [self.prose.paragraph(topic) for _ in range(r.randint(3, 7))]
        if r.random() < 0.12:
            paragraphs[-1] = _with_pii(paragraphs[-1], r)
        year = r.randint(2015, 2025)
        html = _html(site, title, paragraphs, r, year)
        page = Page(self._url(site, topic), 200, "text/html; charset=utf-8", html.encode())
        return page, {"site": site, "title": title, "paragraphs": paragraphs, "topic": topic}

    def near_duplicate(self, source: dict) -> Page:
        """The same story re-published: another site chrome, one sentence more or one less."""
        r = self.rng
        paragraphs = list(source["paragraphs"])
        if r.random() < 0.5:
            paragraphs.append(self.prose.sentence(source["topic"]))
        else:
            sentences = paragraphs[0].split(". ")
            paragraphs[0] = ". ".join(sentences[:-1] or sentences)
        site = r.choice(SITES)
        html = _html(site, source["title"], paragraphs, r, r.randint(2015, 2025))
        return Page(self._url(site, "reprint"), 200, "text/html; charset=utf-8", html.encode())

    def spam_page(self) -> Page:
        r = self.rng
        site = r.choice(SITES)
        kind = r.randrange(4)
        if kind == 0:  # keyword stuffing
            words = [r.choice(SPAM_WORDS) for _ in range(r.randint(80, 200))]
            paragraphs = [" ".join(words[i : i + 20]) for i in range(0, len(words), 20)]
        elif kind == 1:  # link farm
            paragraphs = [" | ".join(f"{r.choice(SPAM_WORDS)} {r.randint(1, 99)}"
                                     for _ in range(12)) for _ in range(6)]
        elif kind == 2:  # teasers that end in ellipses
            paragraphs = [f"{self.prose.sentence(r.choice(sorted(TOPICS)))[:40]}..."
                          for _ in range(r.randint(8, 15))]
        else:  # nearly empty
            paragraphs = [r.choice(["Under construction.", "Coming soon!", "Page moved.",
                                    "Nothing here yet."])]
        html = _html(site, "Best deals " + r.choice(SPAM_WORDS), paragraphs, r, 2024)
        return Page(self._url(site, "deal"), 200, "text/html; charset=utf-8", html.encode())

    def foreign_page(self) -> Page:
        r = self.rng
        language = r.choice(sorted(FOREIGN))
        sentences = FOREIGN[language]
        separator = "" if language in ("zh", "ja") else " "
        paragraphs = [separator.join(r.sample(sentences, min(4, len(sentences))))
                      for _ in range(r.randint(2, 5))]
        site = (f"{language}.example.org", ["Start", "Info"])
        html = _html(site, sentences[0][:30], paragraphs, r, 2023).replace(
            'lang="en"', f'lang="{language}"')
        return Page(self._url(site, "seite"), 200, "text/html; charset=utf-8", html.encode())

    def mislabeled_charset_page(self) -> Page:
        """Declares UTF-8, is windows-1252: extraction must not turn it into mojibake."""
        r = self.rng
        paragraphs = [" ".join(r.sample(WINDOWS_1252_SENTENCES, 3)) + " " +
                      self.prose.paragraph("cooking") for _ in range(3)]
        html = _html(r.choice(SITES), "Notes from the Café", paragraphs, r, 2022)
        return Page(self._url(SITES[0], "cafe"), 200, "text/html; charset=utf-8",
                    html.encode("cp1252"))

    def non_html_page(self) -> Page:
        r = self.rng
        kind = r.randrange(6)
        site = r.choice(SITES)
        if kind == 0:
            body = b"\x89PNG\r\n\x1a\n" + r.randbytes(r.randint(200, 2000))
            return Page(self._url(site, "img") + ".png", 200, "image/png", body)
        if kind == 1:
            body = b"%PDF-1.4\n" + r.randbytes(r.randint(500, 3000)) + b"\n%%EOF\n"
            return Page(self._url(site, "doc") + ".pdf", 200, "application/pdf", body)
        if kind == 2:
            body = b"body { margin: 0; font-family: serif; }\nnav li { display: inline; }\n"
            return Page(self._url(site, "static") + ".css", 200, "text/css", body)
        if kind == 3:
            body = json.dumps({"items": [r.randint(0, 100) for _ in range(20)]}).encode()
            return Page(self._url(site, "api") + ".json", 200, "application/json", body)
        if kind == 4:
            body = b"<html><body><h1>404 Not Found</h1></body></html>"
            return Page(self._url(site, "missing"), 404, "text/html", body)
        return Page(self._url(site, "old"), 301, "text/html", b"")

    def build(self) -> tuple[list[list[Page]], list[dict]]:
        r = self.rng
        files: list[list[Page]] = [[] for _ in range(NUM_FILES)]
        originals: list[dict] = []
        for index in range(NUM_FILES * PAGES_PER_FILE):
            target = files[index % NUM_FILES]
            roll = r.random()
            if roll < 0.50 or not originals:
                page, source = self.prose_page()
                originals.append({**source, "page": page})
            elif roll < 0.56:  # exact copy at another URL, often in another file
                source = r.choice(originals)
                page = Page(self._url(source["site"], "mirror"), 200, source["page"].content_type,
                            source["page"].body)
            elif roll < 0.62:
                page = self.near_duplicate(r.choice(originals))
            elif roll < 0.74:
                page = self.spam_page()
            elif roll < 0.86:
                page = self.foreign_page()
            elif roll < 0.88:
                page = self.mislabeled_charset_page()
            else:
                page = self.non_html_page()
            target.append(page)
        return files, originals

    def reference_documents(self) -> list[dict]:
        """The positives of the quality classifier: long, clean articles as they come out of
        extraction from good pages (site navigation included, as with pages linked from
        Wikipedia), so that the classifier learns content, not page chrome."""
        from lmlib.web.html_text import extract_text_from_html_bytes

        documents = []
        for index in range(REFERENCE_DOCUMENTS):
            topic = sorted(TOPICS)[index % len(TOPICS)]
            title = self.prose.title(topic)
            sections = [self.prose.paragraph(topic, (5, 9)) for _ in range(self.rng.randint(4, 8))]
            html = _html(self.rng.choice(SITES), title, sections, self.rng,
                         self.rng.randint(2015, 2025))
            documents.append({"title": title, "text": extract_text_from_html_bytes(html.encode())})
        return documents


def _warc_record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    lines = ["WARC/1.1", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(block)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def _digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _http_response(page: Page) -> bytes:
    reason = {200: "OK", 301: "Moved Permanently", 404: "Not Found"}[page.status]
    headers = [f"HTTP/1.1 {page.status} {reason}", f"Content-Type: {page.content_type}",
               f"Content-Length: {len(page.body)}", "Server: sample-crawl"]
    if page.status == 301:
        headers.append(f"Location: {page.url}/new")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + page.body


def write_warc(path: Path, pages: list[Page], file_index: int, truncate_last: bool) -> None:
    """One gzip member per record, as Common Crawl writes them."""
    members = []
    info = f"software: lmlib.web.sample_crawl\r\nformat: WARC File Format 1.1\r\nseed: {SEED}\r\n"
    members.append(_warc_record([
        ("WARC-Type", "warcinfo"), ("WARC-Date", "2026-01-01T00:00:00Z"),
        ("WARC-Filename", path.name),
        ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, path.name)}>"),
        ("Content-Type", "application/warc-fields")], info.encode()))
    for number, page in enumerate(pages):
        seconds = file_index * 100_000 + number * 7
        date = CRAWL_DATE.format(day=1 + seconds // 86400, hour=seconds // 3600 % 24,
                                 minute=seconds // 60 % 60, second=seconds % 60)
        request = (f"GET /{page.url.split('/', 3)[3]} HTTP/1.1\r\nHost: {page.url.split('/')[2]}"
                   "\r\nUser-Agent: sample-crawl\r\n\r\n").encode()
        request_id = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'request:' + page.url)}>"
        members.append(_warc_record([
            ("WARC-Type", "request"), ("WARC-Target-URI", page.url), ("WARC-Date", date),
            ("WARC-Record-ID", request_id),
            ("Content-Type", "application/http; msgtype=request")], request))
        response = _http_response(page)
        members.append(_warc_record([
            ("WARC-Type", "response"), ("WARC-Target-URI", page.url), ("WARC-Date", date),
            ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, page.url)}>"),
            ("WARC-Concurrent-To", request_id),
            ("WARC-Block-Digest", _digest(response)),
            ("WARC-Payload-Digest", _digest(page.body)),
            ("Content-Type", "application/http; msgtype=response")], response))
    compressed = [gzip.compress(member, compresslevel=6, mtime=0) for member in members]
    if truncate_last:
        compressed[-1] = compressed[-1][: len(compressed[-1]) // 2]
    path.write_bytes(b"".join(compressed))


def generate(out_dir: Path = DEFAULT_OUT, seed: int = SEED) -> list[Path]:
    """Write the sample crawl and the quality reference set into out_dir; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    crawl = SampleCrawl(seed)
    files, _ = crawl.build()
    paths = []
    for index, pages in enumerate(files):
        path = out_dir / f"sample-{index:05d}.warc.gz"
        write_warc(path, pages, index, truncate_last=index == len(files) - 1)
        paths.append(path)
    lines = "".join(json.dumps(doc, ensure_ascii=False) + "\n"
                    for doc in crawl.reference_documents())
    reference = out_dir / QUALITY_REFERENCE_FILE
    reference.write_bytes(gzip.compress(lines.encode(), compresslevel=6, mtime=0))
    paths.append(reference)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for path in generate(args.out, args.seed):
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
