"""xscreen: chest X-ray screening on CPUs and edge devices, with measured speed/accuracy trade-offs.

Not a medical device. See README.md for what the bundled model was trained on and its limits.
"""

__version__ = "0.3.0"
