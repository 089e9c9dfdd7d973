"""Offline stand-in for the get-pip script that ansible-test downloads (its host is unreachable here).

ansible-test runs this inside each fresh sanity venv with get-pip's arguments. Bootstrap pip from the
interpreter's bundled wheel, then let that pip install what was asked (e.g. pip==25.2) from the configured
index. Both run in subprocesses: ensurepip run in-process leaves PIP_CONFIG_FILE=/dev/null behind, and pip
then ignores the machine's certificate settings.
neonops-storage get-pip stand-in (marker: scripts/sanity.sh refreshes files that contain this line)
"""

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main() -> None:
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)
    pip_args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    if any(not arg.startswith("-") for arg in pip_args):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pip_args], check=True)


if __name__ == "__main__":
    main()
