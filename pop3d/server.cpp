// pop3d's listeners (see server.hpp).
#include "pop3d/server.hpp"

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/panic.hpp"

namespace facteur::pop3d {
namespace {

event::SessionServer::Options options(const Settings& settings) {
    event::SessionServer::Options options;
    options.session_limit = settings.session_limit;
    options.client_connection_limit = settings.client_connection_limit;
    options.too_many_sessions = [] { return std::string("-ERR [SYS/TEMP] Too many sessions, try again later\r\n"); };
    options.too_many_from_address = [](const std::string& address) {
        return fmt::format("-ERR [SYS/TEMP] Too many connections from {}\r\n", address);
    };
    options.client_name = [](const std::string& address) { return address; };
    return options;
}

}  // namespace

Server::Server(SessionServices services) : services_(services), server_(services.loop, options(services.settings)) {}

void Server::listen(UniqueFd fd, PortKind kind) {
    SSL_CTX* implicit_tls = nullptr;
    if (kind == PortKind::pop3s) {
        // main refuses to start like this; never serve 995 in clear text.
        if (services_.tls == nullptr) panic("pop3s socket without TLS configured");
        implicit_tls = services_.tls->get();
    }
    server_.listen(std::move(fd), implicit_tls, [this, kind](std::shared_ptr<event::Connection> connection) {
        return std::make_shared<Session>(services_, std::move(connection), kind);
    });
}

}  // namespace facteur::pop3d
