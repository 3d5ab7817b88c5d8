import sys
from pathlib import Path

# naive.py (the reference implementations) is imported by the tests as a plain module.
sys.path.insert(0, str(Path(__file__).parent))
