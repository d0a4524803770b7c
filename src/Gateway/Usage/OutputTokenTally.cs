using System.Buffers;

namespace Gateway.Usage;

/// <summary>
/// Counts the output tokens of text already forwarded to the client, for streams that end without usage.
/// Text is batched in a small pooled buffer (held for the whole stream, so it is kept small: 10,000 open streams
/// hold 10,000 of them) and tokenized a batch at a time. A full batch is cut before its last whitespace, and the
/// rest carried over, because o200k_base splits words before their leading space: a cut there changes no token.
/// While the stream waits for its next event (<see cref="ReleaseBatch"/>) the batch is counted to the same kind of cut
/// and returned; the few characters after the cut wait in a small array of the tally's own.
/// </summary>
internal sealed class OutputTokenTally(TokenCounter counter)
{
    private const int BatchChars = 1024;
    private readonly char[] _idleCarry = new char[64];
    private char[]? _batch; // null: the held text (_length chars) is in _idleCarry
    private int _length;
    private long _tokens;
    private bool _any;

    public bool HasText => _any;

    public void AddJsonString(ReadOnlySpan<byte> raw)
    {
        if (raw.IsEmpty)
        {
            return;
        }

        _any = true;
        if (_batch is null)
        {
            _batch = ArrayPool<char>.Shared.Rent(BatchChars);
            _idleCarry.AsSpan(0, _length).CopyTo(_batch);
        }

        if (_length + raw.Length > _batch.Length)
        {
            FlushToLastWhitespace();
            if (_length + raw.Length > _batch.Length)
            {
                // Still no room (one long delta or a long run without spaces): count all that is held, then the
                // delta on its own; a word split here may count one token extra.
                Flush();
                if (raw.Length > _batch.Length)
                {
                    var large = ArrayPool<char>.Shared.Rent(raw.Length);
                    _tokens += counter.Count(large.AsSpan(0, JsonText.DecodeTo(raw, large)));
                    ArrayPool<char>.Shared.Return(large);
                    return;
                }
            }
        }

        _length += JsonText.DecodeTo(raw, _batch.AsSpan(_length));
    }

    public long Total()
    {
        Flush();
        return _tokens;
    }

    /// <summary>
    /// Counts the held text up to its last safe cut (as a full batch is) and returns the batch to the pool, keeping the
    /// rest in a small array: a stream waiting for its next event then holds no batch. The total is unchanged.
    /// </summary>
    public void ReleaseBatch()
    {
        if (_batch is null)
        {
            return;
        }

        FlushToLastWhitespace();
        if (_length > _idleCarry.Length)
        {
            return; // a long run without a safe cut: counting it now could split a word, so it stays in the batch
        }

        _batch.AsSpan(0, _length).CopyTo(_idleCarry);
        ArrayPool<char>.Shared.Return(_batch);
        _batch = null;
    }

    /// <summary>Whether a batch buffer is rented (a test hook for what an idle stream holds).</summary>
    internal bool HoldsBatch => _batch is not null;

    private void FlushToLastWhitespace()
    {
        if (_length == 0 || _batch is null)
        {
            return;
        }

        // A space followed by a letter, digit or mark starts a pre-token in o200k_base; newlines and runs of
        // whitespace can join their neighbours (".\n", "  \n"), so only such a space is a safe cut.
        var held = _batch.AsSpan(0, _length);
        var cut = held.Length - 2;
        while (cut > 0 && (held[cut] != ' ' || char.IsWhiteSpace(held[cut + 1])))
        {
            cut--;
        }

        if (cut <= 0)
        {
            return;
        }

        _tokens += counter.Count(held[..cut]);
        held[cut..].CopyTo(_batch);
        _length -= cut;
    }

    private void Flush()
    {
        if (_length > 0)
        {
            _tokens += counter.Count((_batch ?? _idleCarry).AsSpan(0, _length));
            _length = 0;
        }
    }

    /// <summary>Forgets everything and returns the batch buffer to the pool.</summary>
    public void Reset()
    {
        if (_batch is not null)
        {
            ArrayPool<char>.Shared.Return(_batch);
            _batch = null;
        }

        _length = 0;
        _tokens = 0;
        _any = false;
    }
}
