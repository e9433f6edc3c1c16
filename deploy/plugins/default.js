// skydock plugin: the default mapping, written against the original Skydock
// plugin contract. createService(container) receives the inspected container
// and returns {Port, Environment, TTL, Service, Instance, Host}.
//
// Port: the lowest published host port, else the lowest exposed port, else 80.

function lowestPort(container) {
    var best = 0;
    var exposedBest = 0;
    var ports = (container.NetworkSettings && container.NetworkSettings.Ports) || {};
    Object.keys(ports).forEach(function (spec) {
        var bindings = ports[spec];
        if (bindings && bindings.length) {
            bindings.forEach(function (b) {
                var p = parseInt(b.HostPort, 10);
                if (p > 0 && (best === 0 || p < best)) { best = p; }
            });
        } else {
            var e = parseInt(spec.split("/")[0], 10);
            if (e > 0 && (exposedBest === 0 || e < exposedBest)) { exposedBest = e; }
        }
    });
    return best || exposedBest || 80;
}

function createService(container) {
    return {
        Port: lowestPort(container),
        Environment: defaultEnvironment,
        TTL: defaultTTL,
        Service: cleanImageName(container.Image),
        Instance: removeSlash(container.Name),
        Host: container.NetworkSettings.IpAddress
    };
}
