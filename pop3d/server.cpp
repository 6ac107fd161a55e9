// Listening sockets and session bookkeeping (see server.hpp).
#include "pop3d/server.hpp"

#include <fmt/format.h>

#include "libmail/log.hpp"

namespace facteur::pop3d {

Server::Server(SessionServices services) : services_(services) {}

Server::~Server() {
    *alive_ = false;
    listeners_.clear();
    sessions_.clear();
    refused_.clear();
}

void Server::listen(UniqueFd fd, PortKind kind) {
    listeners_.push_back(std::make_unique<event::Listener>(
        services_.loop, std::move(fd),
        [this, kind](UniqueFd client, const sockaddr_storage&, socklen_t) { accept(std::move(client), kind); }));
    listeners_.back()->enable();
}

void Server::accept(UniqueFd fd, PortKind kind) {
    if (shutting_down_) return;
    if (kind == PortKind::pop3s && services_.tls == nullptr) {
        // main refuses to start like this; never serve 995 in clear text.
        log::error("pop3s connection without TLS configured: dropped");
        return;
    }
    std::shared_ptr<event::Connection> connection =
        kind == PortKind::pop3s ? event::Connection::create_tls_server(services_.loop, std::move(fd), services_.tls->get())
                                : event::Connection::create(services_.loop, std::move(fd));
    const Settings& settings = services_.settings;
    std::string address = connection->peer_address();
    if (sessions_.size() >= settings.session_limit) {
        log::warning("refused connection from {}: session_limit {} reached", address, settings.session_limit);
        return refuse(connection, "-ERR [SYS/TEMP] Too many sessions, try again later\r\n");
    }
    size_t& count = per_address_[address];
    if (count >= settings.client_connection_limit) {
        if (count == 0) per_address_.erase(address);
        log::warning("refused connection from {}: client_connection_limit {} reached", address,
                     settings.client_connection_limit);
        return refuse(connection, fmt::format("-ERR [SYS/TEMP] Too many connections from {}\r\n", address));
    }
    ++count;
    uint64_t id = next_id_++;
    auto session = std::make_shared<Session>(services_, std::move(connection), kind);
    sessions_[id] = session;
    std::weak_ptr<bool> alive = alive_;
    session->start([this, alive, id, address] {
        if (!alive.expired()) finished(id, address);
    });
}

void Server::refuse(std::shared_ptr<event::Connection> connection, std::string reply) {
    uint64_t id = next_id_++;
    refused_[id] = connection;
    std::weak_ptr<bool> alive = alive_;
    connection->on_close([this, alive, id](event::CloseReason) {
        if (alive.expired()) return;
        // Erasing from inside the callback is safe: the connection keeps
        // itself alive until its callback returns.
        refused_.erase(id);
    });
    connection->set_idle_timeout(std::chrono::seconds(10));
    connection->start();
    connection->write(reply);
    connection->close_after_write();
}

void Server::finished(uint64_t id, const std::string& address) {
    // The session may be running this very callback: keep it alive until
    // the callback has returned to it.
    auto found_session = sessions_.find(id);
    if (found_session == sessions_.end()) return;
    std::shared_ptr<Session> keep = std::move(found_session->second);
    sessions_.erase(found_session);
    auto found = per_address_.find(address);
    if (found != per_address_.end() && --found->second == 0) per_address_.erase(found);
    if (shutting_down_ && sessions_.empty() && on_shutdown_done_) {
        auto done = std::move(on_shutdown_done_);
        on_shutdown_done_ = nullptr;
        done();
    }
}

void Server::shutdown(std::function<void()> done) {
    shutting_down_ = true;
    listeners_.clear();
    on_shutdown_done_ = std::move(done);
    // Copy: a session may finish (and leave the map) while being told.
    auto sessions = sessions_;
    for (auto& [id, session] : sessions) session->shutdown();
    if (sessions_.empty() && on_shutdown_done_) {
        auto callback = std::move(on_shutdown_done_);
        on_shutdown_done_ = nullptr;
        callback();
    }
}

}  // namespace facteur::pop3d
