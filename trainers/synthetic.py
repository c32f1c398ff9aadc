"""A synthetic text classification data set: learnable, deterministic, offline.

Each class owns a few topic words; a sentence is a handful of shared filler words with two or
three words of its class mixed in. The class words of different classes are disjoint, so the
label is a function of the bag of words and a tiny random-weight transformer learns it in a few
hundred steps. Every word is one token of the bert-base-uncased vocabulary.
"""

from __future__ import annotations

import random

# Class words, dealt out to the classes in order: class k owns WORDS_PER_CLASS consecutive words.
CLASS_WORDS: tuple[str, ...] = (
    "apple", "banana", "cherry", "lemon", "orange", "grape",
    "tiger", "horse", "rabbit", "eagle", "shark", "wolf",
    "piano", "guitar", "violin", "drum", "trumpet", "flute",
    "river", "mountain", "forest", "desert", "island", "valley",
    "doctor", "nurse", "lawyer", "farmer", "pilot", "teacher",
    "hammer", "shovel", "knife", "rope", "ladder", "bucket",
    "rain", "snow", "storm", "thunder", "fog", "wind",
    "soccer", "tennis", "golf", "hockey", "boxing", "cricket",
    "copper", "silver", "gold", "iron", "steel", "nickel",
    "train", "truck", "bicycle", "boat", "plane", "bus",
    "shirt", "jacket", "boots", "hat", "scarf", "gloves",
    "bread", "cheese", "butter", "soup", "rice", "pasta",
    "church", "castle", "bridge", "tower", "temple", "prison",
    "king", "queen", "prince", "soldier", "priest", "knight",
    "chair", "table", "sofa", "bed", "desk", "lamp",
    "heart", "brain", "lung", "liver", "kidney", "stomach",
    "coffee", "tea", "milk", "juice", "wine", "beer",
    "math", "physics", "chemistry", "biology", "history", "poetry",
    "winter", "summer", "spring", "autumn", "morning", "midnight",
    "diamond", "pearl", "ruby", "crystal", "marble", "granite",
)  # fmt: skip

# Shared filler words: frequent English words that say nothing about the class.
FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "of", "and", "to", "in", "is", "was", "it", "that",
    "with", "on", "for", "as", "at", "by", "this", "from", "there", "some",
    "very", "then", "just", "also", "again", "near", "about", "over", "under", "after",
    "we", "they", "she", "he", "saw", "had", "made", "found", "took", "got",
)  # fmt: skip

WORDS_PER_CLASS = 6
MAX_LABELS = len(CLASS_WORDS) // WORDS_PER_CLASS
MIN_WORDS, MAX_WORDS = 6, 12
MIN_CLASS_WORDS, MAX_CLASS_WORDS = 2, 3


def class_words(num_labels: int) -> list[tuple[str, ...]]:
    """The topic words of each of ``num_labels`` classes (disjoint across classes)."""
    if not 2 <= num_labels <= MAX_LABELS:
        raise ValueError(f"synthetic data supports 2 to {MAX_LABELS} labels, got {num_labels}")
    k = WORDS_PER_CLASS
    return [CLASS_WORDS[i * k : (i + 1) * k] for i in range(num_labels)]


def _sentence(rng: random.Random, words: tuple[str, ...]) -> str:
    n_class = rng.randint(MIN_CLASS_WORDS, MAX_CLASS_WORDS)
    n_total = rng.randint(MIN_WORDS, MAX_WORDS)
    tokens = [rng.choice(words) for _ in range(n_class)]
    tokens += [rng.choice(FILLER_WORDS) for _ in range(n_total - n_class)]
    rng.shuffle(tokens)
    return " ".join(tokens)


def generate(size: int, num_labels: int, seed: int) -> tuple[list[str], list[int]]:
    """``size`` sentences and their labels, balanced over the classes, the same for a seed."""
    groups = class_words(num_labels)
    rng = random.Random(f"paretune-synthetic:{seed}")
    labels = [i % num_labels for i in range(size)]
    rng.shuffle(labels)
    texts = [_sentence(rng, groups[y]) for y in labels]
    return texts, labels
