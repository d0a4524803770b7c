using System.Buffers;

namespace Gateway.Usage;

/// <summary>
/// Counts the output tokens of text already forwarded to the client, for streams that end without usage.
/// Text is batched in a small pooled buffer (held for the whole stream, so it is kept small: 10,000 open streams
/// hold 10,000 of them) and tokenized a batch at a time. A full batch is cut before its last whitespace, and the
/// rest carried over, because o200k_base splits words before their leading space: a cut there changes no token.
/// </summary>
internal sealed class OutputTokenTally(TokenCounter counter)
{
    private const int BatchChars = 1024;
    private char[]? _batch;
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
        _batch ??= ArrayPool<char>.Shared.Rent(BatchChars);
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
        if (_length > 0 && _batch is not null)
        {
            _tokens += counter.Count(_batch.AsSpan(0, _length));
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
