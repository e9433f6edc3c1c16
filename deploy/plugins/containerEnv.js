// skydock plugin: per-container overrides from the container's environment,
// written against the original Skydock plugin contract: DNS_SERVICE,
// DNS_INSTANCE, DNS_ENVIRONMENT and DNS_TTL replace the defaults.

function dnsSettings(container) {
    var found = {};
    var env = (container.Config && container.Config.Env) || [];
    env.forEach(function (pair) {
        var at = pair.indexOf("=");
        if (at > 0 && pair.lastIndexOf("DNS_", 0) === 0) {
            found[pair.substring(0, at)] = pair.substring(at + 1);
        }
    });
    return found;
}

function createService(container) {
    var s = dnsSettings(container);
    return {
        Port: 80,
        Environment: s.DNS_ENVIRONMENT || defaultEnvironment,
        TTL: s.DNS_TTL ? parseInt(s.DNS_TTL, 10) : defaultTTL,
        Service: s.DNS_SERVICE || cleanImageName(container.Image),
        Instance: s.DNS_INSTANCE || removeSlash(container.Name),
        Host: container.NetworkSettings.IpAddress
    };
}
