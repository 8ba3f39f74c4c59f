"""Chapter 2, "Working with text data", run in the book's style on minigpt.

Every listing is typed as the book types it, with only the import lines changed; the numbers the
book prints that do not depend on PyTorch's random generator (character and token counts, the
vocabulary, token ids, batches) are checked exactly, the random embeddings by shape.
"""

import re
from pathlib import Path

import numpy as np
import pytest

import autograd as torch
from minigpt import nn
from minigpt import tokenizer as tiktoken
from minigpt.data import DataLoader, Dataset, create_dataloader
from minigpt.simple_tokenizer import SimpleTokenizerV1, SimpleTokenizerV2

VERDICT = Path(__file__).resolve().parents[2] / "minigpt" / "corpora" / "the-verdict.txt"
SPLIT = r'([,.:;?_!"()\']|--|\s)'


def read_verdict():
    with open(VERDICT, "r", encoding="utf-8") as f:
        return f.read()


def build_book_vocab(raw_text, specials=()):
    preprocessed = re.split(SPLIT, raw_text)
    preprocessed = [item.strip() for item in preprocessed if item.strip()]
    all_tokens = sorted(set(preprocessed))
    all_tokens.extend(specials)
    return preprocessed, {token: integer for integer, token in enumerate(all_tokens)}


def test_2_2_the_short_story_and_its_words():
    raw_text = read_verdict()
    assert len(raw_text) == 20479
    assert raw_text[:99].startswith("I HAD always thought Jack Gisburn rather a cheap genius")
    preprocessed, vocab = build_book_vocab(raw_text)
    assert preprocessed[:10] == ["I", "HAD", "always", "thought", "Jack", "Gisburn", "rather", "a", "cheap", "genius"]
    assert len(preprocessed) == 4690
    assert len(vocab) == 1130
    assert list(vocab.items())[:3] == [("!", 0), ('"', 1), ("'", 2)] and vocab["Hermia"] == 50


def test_listing_2_3_simple_tokenizer_v1():
    _, vocab = build_book_vocab(read_verdict())
    tokenizer = SimpleTokenizerV1(vocab)
    text = """"It's the last he painted, you know,"
           Mrs. Gisburn said with pardonable pride."""
    ids = tokenizer.encode(text)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    assert tokenizer.decode(ids) == '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    with pytest.raises(KeyError, match="'Hello' is not in the vocabulary"):  # the book's KeyError: 'Hello'
        tokenizer.encode("Hello, do you like tea. Is this-- a test?")


def test_listing_2_4_simple_tokenizer_v2_with_special_tokens():
    _, vocab = build_book_vocab(read_verdict(), ["<|endoftext|>", "<|unk|>"])
    assert len(vocab.items()) == 1132
    assert list(vocab.items())[-2:] == [("<|endoftext|>", 1130), ("<|unk|>", 1131)]
    tokenizer = SimpleTokenizerV2(vocab)
    text = " <|endoftext|> ".join(("Hello, do you like tea?", "In the sunlit terraces of the palace."))
    assert tokenizer.encode(text) == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tokenizer.decode(tokenizer.encode(text)) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."


def test_2_5_byte_pair_encoding():
    tokenizer = tiktoken.get_encoding("gpt2")
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace."
    integers = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    assert integers == [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 1659, 617, 34680, 27271, 13]
    assert tokenizer.decode(integers) == text


def test_2_6_next_word_pairs():
    tokenizer = tiktoken.get_encoding("gpt2")
    enc_text = tokenizer.encode(read_verdict())
    assert len(enc_text) == 5145
    enc_sample = enc_text[50:]
    context_size = 4
    x = enc_sample[:context_size]
    y = enc_sample[1:context_size + 1]
    assert (x, y) == ([290, 4920, 2241, 287], [4920, 2241, 287, 257])
    assert [(enc_sample[:i], enc_sample[i]) for i in range(1, context_size + 1)] == [
        ([290], 4920), ([290, 4920], 2241), ([290, 4920, 2241], 287), ([290, 4920, 2241, 287], 257)]
    pairs = [(tokenizer.decode(enc_sample[:i]), tokenizer.decode([enc_sample[i]])) for i in range(1, context_size + 1)]
    assert pairs == [(" and", " established"), (" and established", " himself"),
                     (" and established himself", " in"), (" and established himself in", " a")]


class GPTDatasetV1(Dataset):
    """Listing 2.5 as the book types it (with torch.tensor), to run through minigpt's DataLoader."""

    def __init__(self, txt, tokenizer, max_length, stride):
        self.input_ids = []
        self.target_ids = []
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        for i in range(0, len(token_ids) - max_length, stride):
            self.input_ids.append(torch.tensor(token_ids[i:i + max_length]))
            self.target_ids.append(torch.tensor(token_ids[i + 1: i + max_length + 1]))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, idx):
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True, drop_last=True, num_workers=0):
    tokenizer = tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)


FIRST_BATCH_INPUTS = [
    [40, 367, 2885, 1464], [1807, 3619, 402, 271], [10899, 2138, 257, 7026], [15632, 438, 2016, 257],
    [922, 5891, 1576, 438], [568, 340, 373, 645], [1049, 5975, 284, 502], [284, 3285, 326, 11],
]


def test_listings_2_5_and_2_6_the_books_dataset_class_on_minigpts_dataloader():
    raw_text = read_verdict()
    dataloader = create_dataloader_v1(raw_text, batch_size=1, max_length=4, stride=1, shuffle=False)
    data_iter = iter(dataloader)
    first_batch = next(data_iter)
    second_batch = next(data_iter)
    # The dataset returns tensors, so the batches are tensors (int64), never object arrays.
    assert isinstance(first_batch[0], torch.Tensor) and first_batch[0].dtype == torch.int64
    assert first_batch[0].tolist() == [[40, 367, 2885, 1464]] and first_batch[1].tolist() == [[367, 2885, 1464, 1807]]
    assert second_batch[0].tolist() == [[367, 2885, 1464, 1807]] and second_batch[1].tolist() == [[2885, 1464, 1807, 3619]]

    dataloader = create_dataloader_v1(raw_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(dataloader))
    assert inputs.tolist() == FIRST_BATCH_INPUTS
    assert targets[:, :-1].tolist() == [row[1:] for row in FIRST_BATCH_INPUTS]
    assert targets[-1].tolist() == [3285, 326, 11, 287]


def test_minigpts_create_dataloader_gives_the_same_batches():
    inputs, targets = next(iter(create_dataloader(read_verdict(), batch_size=8, max_length=4, stride=4, shuffle=False)))
    assert inputs.tolist() == FIRST_BATCH_INPUTS and targets[-1].tolist() == [3285, 326, 11, 287]


def test_2_7_and_2_8_token_and_position_embeddings():
    input_ids = torch.tensor([2, 3, 5, 1])
    torch.manual_seed(123)
    embedding_layer = torch.nn.Embedding(6, 3)  # the book's spelling works too
    assert embedding_layer.weight.shape == (6, 3)
    # PyTorch's N(0, 1) draws differ from NumPy's: the lookup is what is checked.
    np.testing.assert_array_equal(embedding_layer(torch.tensor([3])).data, embedding_layer.weight.data[[3]])
    np.testing.assert_array_equal(embedding_layer(input_ids).data, embedding_layer.weight.data[[2, 3, 5, 1]])
    torch.manual_seed(123)
    assert np.array_equal(nn.Embedding(6, 3).weight.data, embedding_layer.weight.data)  # manual_seed reproduces

    vocab_size, output_dim, max_length = 50257, 256, 4
    token_embedding_layer = torch.nn.Embedding(vocab_size, output_dim)
    assert 0.95 < token_embedding_layer.weight.data.std() < 1.05  # N(0, 1), as torch.nn.Embedding
    dataloader = create_dataloader_v1(read_verdict(), batch_size=8, max_length=max_length, stride=max_length, shuffle=False)
    inputs, targets = next(iter(dataloader))
    assert inputs.shape == (8, 4)
    token_embeddings = token_embedding_layer(inputs)
    assert token_embeddings.shape == (8, 4, 256)
    pos_embedding_layer = nn.Embedding(max_length, output_dim)
    pos_embeddings = pos_embedding_layer(torch.arange(max_length))
    assert pos_embeddings.shape == (4, 256)
    input_embeddings = token_embeddings + pos_embeddings
    assert input_embeddings.shape == (8, 4, 256)
