using System.Buffers;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Gateway.Usage;

/// <summary>
/// Counts tokens with the o200k_base encoding (gpt-4o, gpt-4.1, gpt-5, o-series: every current OpenAI model).
/// Used for quota reservations and for the usage of streams that ended without the upstream's own numbers.
/// Loading the vocabulary takes a few hundred milliseconds, so the instance is created once at start.
/// </summary>
internal sealed class TokenCounter
{
    /// <summary>What one image input costs at most in the estimate (a 1024×1024 high-detail image).</summary>
    public const int ImageTokens = 765;

    /// <summary>Per-message framing the model sees around each message (role, separators).</summary>
    public const int PerMessageTokens = 4;

    private readonly Tokenizer _tokenizer = TiktokenTokenizer.CreateForEncoding("o200k_base");

    public int Count(ReadOnlySpan<char> text) => text.IsEmpty ? 0 : _tokenizer.CountTokens(text, considerPreTokenization: true, considerNormalization: false);

    /// <summary>
    /// Estimates the input tokens of a request body: the text the model reads (input, instructions, messages,
    /// tool definitions), not the JSON around it. Bodies above <paramref name="tokenizeThresholdBytes"/> are walked
    /// without tokenizing (text at bytes/4, each image at <see cref="ImageTokens"/>), so a huge body never costs
    /// milliseconds of tokenization and an inline image is not mistaken for megabytes of text.
    /// </summary>
    public long EstimateInput(ReadOnlySpan<byte> body, int tokenizeThresholdBytes)
    {
        var tokenize = body.Length <= tokenizeThresholdBytes;
        var chars = tokenize ? ArrayPool<char>.Shared.Rent(Math.Max(body.Length, 16)) : [];
        try
        {
            return Walk(body, chars, tokenize);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            // Not JSON, or a string that is not valid text (a lone surrogate escape, invalid UTF-8): CopyString
            // refuses it. The estimate must not fail on what a tenant sends; bytes/4 is the fallback.
            return body.Length / 4 + 1;
        }
        finally
        {
            if (tokenize)
            {
                ArrayPool<char>.Shared.Return(chars);
            }
        }
    }

    private long Walk(ReadOnlySpan<byte> body, char[] chars, bool tokenize)
    {
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 256 });
        long tokens = 3; // every request is primed with a few tokens
        var contentDepth = -1;  // depth of the top-level content property being counted, -1 outside
        var schemaDepth = -1;   // inside tool/format definitions property names are read by the model too
        var lastProperty = ScanKey.Other;

        while (reader.Read())
        {
            var depth = reader.CurrentDepth;
            if (contentDepth >= 0 && depth <= contentDepth && reader.TokenType is JsonTokenType.PropertyName or JsonTokenType.EndObject)
            {
                contentDepth = -1;
                schemaDepth = -1;
            }

            switch (reader.TokenType)
            {
                case JsonTokenType.PropertyName:
                    if (depth == 1)
                    {
                        var top = Classify(ref reader);
                        if (top is ScanKey.Content or ScanKey.Schema)
                        {
                            contentDepth = 1;
                            schemaDepth = top == ScanKey.Schema ? 1 : -1;
                        }
                        else
                        {
                            reader.Read();
                            reader.Skip();
                        }

                        lastProperty = ScanKey.Other;
                        break;
                    }

                    lastProperty = Classify(ref reader);
                    if (lastProperty == ScanKey.Image && contentDepth >= 0 && schemaDepth < 0)
                    {
                        // An image costs the same whatever its encoded size, given as "image_url": "<url or data URL>"
                        // (Responses) or as "image_url": {"url": ..., "detail": ...} (Chat): never tokenize the URL.
                        reader.Read();
                        tokens += reader.TokenType is JsonTokenType.String or JsonTokenType.StartObject ? ImageTokens : 0;
                        reader.Skip();
                        break;
                    }

                    if (schemaDepth >= 0)
                    {
                        tokens += CountValue(ref reader, chars, tokenize);
                    }

                    break;
                case JsonTokenType.StartObject when contentDepth >= 0 && depth == contentDepth + 1:
                    tokens += PerMessageTokens;
                    break;
                case JsonTokenType.String when contentDepth >= 0:
                    tokens += lastProperty switch
                    {
                        ScanKey.Image => ImageTokens,
                        ScanKey.FileData => reader.ValueSpan.Length / 4,
                        ScanKey.Ignored => 0,
                        _ => CountValue(ref reader, chars, tokenize),
                    };
                    break;
            }
        }

        return tokens;
    }

    private int CountValue(ref Utf8JsonReader reader, char[] chars, bool tokenize)
    {
        if (!tokenize)
        {
            // English text averages about 4 bytes per o200k token.
            return (reader.HasValueSequence ? (int)reader.ValueSequence.Length : reader.ValueSpan.Length) / 4 + 1;
        }

        var length = reader.CopyString(chars);
        return Count(chars.AsSpan(0, length));
    }

    private static ScanKey Classify(ref Utf8JsonReader reader)
    {
        if (reader.ValueTextEquals("input"u8) || reader.ValueTextEquals("instructions"u8) || reader.ValueTextEquals("messages"u8)
            || reader.ValueTextEquals("prompt"u8))
        {
            return ScanKey.Content;
        }

        if (reader.ValueTextEquals("tools"u8) || reader.ValueTextEquals("text"u8) || reader.ValueTextEquals("response_format"u8)
            || reader.ValueTextEquals("functions"u8))
        {
            return ScanKey.Schema;
        }

        if (reader.ValueTextEquals("image_url"u8))
        {
            return ScanKey.Image;
        }

        if (reader.ValueTextEquals("file_data"u8) || reader.ValueTextEquals("data"u8))
        {
            return ScanKey.FileData;
        }

        if (reader.ValueTextEquals("type"u8) || reader.ValueTextEquals("role"u8) || reader.ValueTextEquals("id"u8)
            || reader.ValueTextEquals("call_id"u8) || reader.ValueTextEquals("file_id"u8) || reader.ValueTextEquals("detail"u8)
            || reader.ValueTextEquals("status"u8))
        {
            return ScanKey.Ignored;
        }

        return ScanKey.Other;
    }

    private enum ScanKey : byte
    {
        Other,
        Content,
        Schema,
        Image,
        FileData,
        Ignored,
    }
}
