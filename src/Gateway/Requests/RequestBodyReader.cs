using System.Buffers;
using Gateway.Errors;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Requests;

/// <summary>
/// Reads a JSON request body whole (it must be inspected for model, stream, ids and token estimates before
/// anything is forwarded) into a pooled buffer, refusing it early when it is over the configured limit.
/// The buffer grows with the bytes that actually arrive (doubling from a small start, never past the declared length
/// or the limit): a client that declares 32 MiB and sends a trickle costs a trickle, not 32 MiB.
/// </summary>
internal static class RequestBodyReader
{
    /// <summary>The first buffer for a body of unknown or larger length; most requests fit in it.</summary>
    public const int InitialBufferBytes = 16 * 1024;

    public static async ValueTask<(PooledBody? Body, OpenAIError? Error)> ReadAsync(HttpContext context, long maxBytes)
    {
        var request = context.Request;
        var declared = request.ContentLength;
        if (declared > maxBytes)
        {
            return (null, OpenAIError.BodyTooLarge(maxBytes));
        }

        // Our own limit replaces Kestrel's 30 MB default for these routes.
        var sizeFeature = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false })
        {
            sizeFeature.MaxRequestBodySize = null;
        }

        // Kestrel ends the body at the declared length, so no buffer need exceed it.
        var ceiling = Math.Min(maxBytes, declared ?? maxBytes);
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Clamp(ceiling, 1, InitialBufferBytes));
        var length = 0;
        try
        {
            while (declared is null || length < declared)
            {
                if (length == buffer.Length)
                {
                    if (buffer.Length >= maxBytes)
                    {
                        // Full at the limit: one more byte means too large.
                        var probe = new byte[1];
                        if (await request.Body.ReadAsync(probe, context.RequestAborted) > 0)
                        {
                            ArrayPool<byte>.Shared.Return(buffer);
                            return (null, OpenAIError.BodyTooLarge(maxBytes));
                        }

                        break;
                    }

                    var larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(ceiling, (long)buffer.Length * 2));
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }

                var read = await request.Body.ReadAsync(buffer.AsMemory(length, (int)Math.Min(buffer.Length - length, maxBytes - length + 1)), context.RequestAborted);
                if (read == 0)
                {
                    break;
                }

                length += read;
                if (length > maxBytes)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    return (null, OpenAIError.BodyTooLarge(maxBytes));
                }
            }
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }

        return (new PooledBody(buffer, length), null);
    }
}
