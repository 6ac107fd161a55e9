// Listening sockets and session bookkeeping for the protocol daemons (see
// session_server.hpp).
#include "libmail/session_server.hpp"

#include <signal.h>

#include "libmail/log.hpp"
#include "libmail/tls.hpp"

namespace facteur::event {

ServerSession::~ServerSession() = default;

SessionServer::SessionServer(Loop& loop, Options options) : loop_(loop), options_(std::move(options)) {}

SessionServer::~SessionServer() {
    *alive_ = false;
    listeners_.clear();
    sessions_.clear();
    refused_.clear();
}

void SessionServer::listen(UniqueFd fd, SSL_CTX* implicit_tls, SessionFactory make_session) {
    listeners_.push_back(std::make_unique<Listener>(
        loop_, std::move(fd),
        [this, implicit_tls, make_session = std::move(make_session)](UniqueFd client, const sockaddr_storage&,
                                                                      socklen_t) {
            accept(std::move(client), implicit_tls, make_session);
        }));
    listeners_.back()->enable();
}

void SessionServer::accept(UniqueFd fd, SSL_CTX* implicit_tls, const SessionFactory& make_session) {
    if (shutting_down_) return;
    std::shared_ptr<Connection> connection = implicit_tls != nullptr
                                                 ? Connection::create_tls_server(loop_, std::move(fd), implicit_tls)
                                                 : Connection::create(loop_, std::move(fd));
    std::string address = connection->peer_address();
    if (sessions_.size() >= options_.session_limit) {
        log::warning("refused connection from {}: session_limit {} reached", options_.client_name(address),
                     options_.session_limit);
        return refuse(connection, options_.too_many_sessions());
    }
    size_t& count = per_address_[address];
    if (count >= options_.client_connection_limit) {
        if (count == 0) per_address_.erase(address);
        log::warning("refused connection from {}: client_connection_limit {} reached", options_.client_name(address),
                     options_.client_connection_limit);
        return refuse(connection, options_.too_many_from_address(address));
    }
    ++count;
    uint64_t id = next_id_++;
    std::shared_ptr<ServerSession> session = make_session(std::move(connection));
    sessions_[id] = session;
    std::weak_ptr<bool> alive = alive_;
    session->start([this, alive, id, address] {
        if (!alive.expired()) finished(id, address);
    });
}

void SessionServer::refuse(std::shared_ptr<Connection> connection, std::string reply) {
    uint64_t id = next_id_++;
    refused_[id] = connection;
    std::weak_ptr<bool> alive = alive_;
    connection->on_close([this, alive, id](CloseReason) {
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

void SessionServer::finished(uint64_t id, const std::string& address) {
    // The session may be running this very callback: keep it alive until
    // the callback has returned to it.
    auto found_session = sessions_.find(id);
    if (found_session == sessions_.end()) return;
    std::shared_ptr<ServerSession> keep = std::move(found_session->second);
    sessions_.erase(found_session);
    auto found = per_address_.find(address);
    if (found != per_address_.end() && --found->second == 0) per_address_.erase(found);
    if (shutting_down_ && sessions_.empty() && on_shutdown_done_) {
        auto done = std::move(on_shutdown_done_);
        on_shutdown_done_ = nullptr;
        done();
    }
}

void SessionServer::shutdown(std::function<void()> done) {
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

ServerSignals::ServerSignals(Loop& loop, std::function<size_t()> sessions,
                             std::function<void(std::function<void()>)> shutdown, std::chrono::milliseconds grace,
                             tls::Context* tls, std::string cert_file)
    : loop_(loop),
      sessions_(std::move(sessions)),
      shutdown_(std::move(shutdown)),
      grace_(grace),
      tls_(tls),
      cert_file_(std::move(cert_file)),
      stop_timer_(loop, [this] { loop_.stop(); }),
      on_term_(loop, SIGTERM, [this] { stop(); }),
      on_int_(loop, SIGINT, [this] { stop(); }),
      on_hup_(loop, SIGHUP, [this] { reload(); }) {}

void ServerSignals::stop() {
    if (stopping_) return;
    stopping_ = true;
    log::info("stopping: closing {} sessions", sessions_());
    stop_timer_.start(grace_);
    shutdown_([this] { loop_.stop(); });
}

void ServerSignals::reload() {
    if (tls_ == nullptr) return;
    if (Status reloaded = tls_->reload(); !reloaded)
        log::error("TLS reload failed, keeping the old certificate: {}", reloaded.error());
    else
        log::info("TLS certificate reloaded from {}", cert_file_);
}

}  // namespace facteur::event
