"""Container IDs and names: validation and generation (pure, no I/O but the random source).

IDs are 64 random hex digits whose 12-digit short form is never all digits (Docker re-rolls those so a
short ID cannot be mistaken for a number). Random names are ``adjective_noun`` as Docker makes them.
"""

import re
import secrets

from dockyard import errdefs

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_ADJECTIVES = (
    "admiring adoring agitated amazing angry awesome blissful bold boring brave busy charming clever "
    "compassionate competent confident cool cranky crazy dazzling determined distracted dreamy eager "
    "ecstatic elastic elated elegant eloquent epic exciting fervent festive flamboyant focused friendly "
    "frosty funny gallant gifted goofy gracious great happy hardcore heuristic hopeful hungry infallible "
    "inspiring intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic "
    "pensive practical priceless quirky quizzical relaxed reverent romantic sad serene sharp silly "
    "sleepy stoic strange stupefied suspicious sweet tender thirsty trusting unruffled upbeat vibrant "
    "vigilant vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()

# Scientists and engineers, as in Docker's list (surnames only: facts, not text).
_NOUNS = (
    "agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach bardeen "
    "bartik bassi bell bhabha bhaskara blackwell bohr booth borg bose boyd brahmagupta brattain brown "
    "carson cerf chandrasekhar chatterjee chebyshev clarke colden cori cray curie darwin davinci dijkstra "
    "dirac driscoll dubinsky easley einstein elion engelbart euclid euler faraday fermat fermi feynman "
    "franklin galileo gates goldberg goldstine goldwasser golick goodall hamilton hawking heisenberg "
    "hermann herschel hertz hodgkin hoover hopper hugle hypatia jackson jang jennings jepsen johnson "
    "joliot jones kalam kapitsa keller kepler khorana kilby kirch knuth kowalevski lalande lamarr "
    "lamport leakey leavitt lederberg lehmann lewin lichterman liskov lovelace lumiere mahavira "
    "margulis matsumoto maxwell mayer mccarthy mcclintock mclean mcnulty meitner mendel mendeleev "
    "merkle mirzakhani moore morse murdock napier nash neumann newton nightingale nobel noether "
    "northcutt noyce panini pare pascal pasteur payne perlman pike poincare poitras ptolemy raman "
    "ramanujan ride ritchie robinson roentgen rosalind rubin saha sammet sanderson shannon shaw "
    "shirley shockley sinoussi snyder spence stallman stonebraker sutherland swanson swartz swirles "
    "tesla tharp thompson torvalds tu turing varahamihira vaughan villani visvesvaraya volhard wescoff "
    "wiles williams wilson wing wozniak wright wu yalow yonath zhukovsky"
).split()


def new_id() -> str:
    while True:
        cid = secrets.token_hex(32)
        if not cid[:12].isdigit():
            return cid


def random_name(taken) -> str:
    """A free ``adjective_noun`` name; ``taken(name)`` says whether "/name" is in use."""
    for attempt in range(50):
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
        if attempt > 5:  # the space is ~30k names: add a digit once collisions get likely, as Docker does
            name += str(secrets.randbelow(10))
        if not taken("/" + name):
            return name
    raise errdefs.Internal("could not generate a free container name")


def normalize(name: str) -> str:
    """Validate a user-given container name and return it with the leading '/'."""
    if not _NAME_RE.match(name):
        raise errdefs.InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def conflict(name: str, owner_id: str) -> errdefs.AlreadyExists:
    return errdefs.AlreadyExists(
        f'Conflict. The container name "{name}" is already in use by container "{owner_id}". '
        f"You have to remove (or rename) that container to be able to reuse that name.")
