using System.Net;
using Yarp.ReverseProxy.Forwarder;

// usage: BareProxy --urls http://127.0.0.1:18085 --upstream http://127.0.0.1:18080 [--upstream-http-version 2]
//                  [--unsafe-inline-scheduling] [--no-wait-for-data]
// (2: h2c to the upstream, as the gateway's Gateway:Upstream:HttpVersion 2 in the open-streams bench; the last two set
// Kestrel's SocketTransportOptions UnsafePreferInlineScheduling / WaitForDataBeforeAllocatingBuffer=false, so the
// floor stays like for like when such a setting is tried on the gateway)
var inlineScheduling = args.Contains("--unsafe-inline-scheduling");
var waitForData = !args.Contains("--no-wait-for-data");
args = [.. args.Where(a => a is not ("--unsafe-inline-scheduling" or "--no-wait-for-data"))];
var builder = WebApplication.CreateSlimBuilder(args);
builder.WebHost.UseSockets(o =>
{
    o.UnsafePreferInlineScheduling = inlineScheduling;
    o.WaitForDataBeforeAllocatingBuffer = waitForData;
});
builder.Logging.ClearProviders();
builder.Services.AddHttpForwarder();
var app = builder.Build();

var upstream = app.Configuration["upstream"] ?? "http://127.0.0.1:18080";
var invoker = new HttpMessageInvoker(new SocketsHttpHandler
{
    UseProxy = false,
    AllowAutoRedirect = false,
    AutomaticDecompression = DecompressionMethods.None,
    UseCookies = false,
    EnableMultipleHttp2Connections = true,
    ActivityHeadersPropagator = null,
});
var config = app.Configuration["upstream-http-version"] == "2"
    ? new ForwarderRequestConfig { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact }
    : new ForwarderRequestConfig { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionOrLower };
var forwarder = app.Services.GetRequiredService<IHttpForwarder>();

app.Map("/{**rest}", async context =>
{
    await forwarder.SendAsync(context, upstream, invoker, config, HttpTransformer.Default);
});

app.Run();
