// smtpd's listeners (see server.hpp).
#include "smtpd/server.hpp"

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/panic.hpp"

namespace facteur::smtpd {
namespace {

event::SessionServer::Options options(const Settings& settings) {
    event::SessionServer::Options options;
    options.session_limit = settings.session_limit;
    options.client_connection_limit = settings.client_connection_limit;
    std::string hostname = settings.myhostname;
    options.too_many_sessions = [hostname] {
        return fmt::format("421 4.3.2 {} Error: too many sessions, try again later\r\n", hostname);
    };
    options.too_many_from_address = [hostname](const std::string& address) {
        return fmt::format("421 4.7.0 {} Error: too many connections from {}\r\n", hostname, address);
    };
    // Postfix's "unknown[ip]": no reverse DNS yet.
    options.client_name = [](const std::string& address) { return fmt::format("unknown[{}]", address); };
    return options;
}

}  // namespace

Server::Server(SessionServices services) : services_(services), server_(services.loop, options(services.settings)) {}

void Server::listen(UniqueFd fd, PortKind kind) {
    SSL_CTX* implicit_tls = nullptr;
    if (kind == PortKind::submissions) {
        // main refuses to start like this; never serve 465 in clear text.
        if (services_.tls == nullptr) panic("submissions socket without TLS configured");
        implicit_tls = services_.tls->get();
    }
    server_.listen(std::move(fd), implicit_tls, [this, kind](std::shared_ptr<event::Connection> connection) {
        return std::make_shared<Session>(services_, std::move(connection), kind);
    });
}

}  // namespace facteur::smtpd
