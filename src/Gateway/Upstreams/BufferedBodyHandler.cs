namespace Gateway.Upstreams;

/// <summary>
/// Sends a request whose body the gateway holds (<see cref="BufferedRequestContent"/>, attached under <see cref="Body"/>)
/// with that content instead of YARP's streaming copy, keeping the content headers YARP copied from the client's request.
/// Runs inside HttpClient's send, after YARP's own checks of the request it built.
/// </summary>
internal sealed class BufferedBodyHandler(HttpMessageHandler inner) : DelegatingHandler(inner)
{
    public static readonly HttpRequestOptionsKey<BufferedRequestContent> Body = new("Gateway.BufferedBody");

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (request.Content is { } streamed && request.Options.TryGetValue(Body, out var buffered) && !ReferenceEquals(streamed, buffered))
        {
            foreach (var header in streamed.Headers.NonValidated)
            {
                foreach (var value in header.Value)
                {
                    buffered.Headers.TryAddWithoutValidation(header.Key, value);
                }
            }

            request.Content = buffered;
        }

        return base.SendAsync(request, cancellationToken);
    }
}
