// Control socket request handling.
#include "master/control.hpp"

#include <unistd.h>

#include "libmail/log.hpp"
#include "libmail/master_control.hpp"

namespace facteur::master {

ControlServer::ControlServer(event::Loop& loop, UniqueFd listening_fd, Supervisor& supervisor,
                             std::function<void()> stop, std::function<Status()> reload)
    : supervisor_(supervisor), stop_(std::move(stop)), reload_(std::move(reload)) {
    uid_t owner = geteuid();
    server_ = std::make_unique<ipc::Server>(
        loop, std::move(listening_fd),
        [this](const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond) {
            auto command = request.get("command");
            log::info("control: command={} uid={} pid={}", command ? log::printable(*command) : "-", peer.uid,
                      peer.pid);
            handle(request, std::move(respond));
        },
        // The socket is mode 0600 already; SO_PEERCRED is the second lock.
        [owner](const ipc::PeerCredentials& peer) { return peer.uid == 0 || peer.uid == owner; });
}

void ControlServer::handle(const ipc::Frame& request, ipc::Server::Responder respond) {
    auto command = request.get("command");
    if (!command) {
        respond(ipc::error_reply("missing command"));
        return;
    }
    if (*command == "status") {
        std::vector<master_control::ProcessStatus> rows;
        auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
        rows.push_back({"master", getpid(), supervisor_.stopping() ? "stopping" : "running", uptime.count(), 0});
        for (auto& row : supervisor_.status()) rows.push_back(std::move(row));
        respond(master_control::encode_status(rows));
    } else if (*command == "stop") {
        respond(ipc::ok_reply());
        stop_();
    } else if (*command == "reload") {
        Status status = reload_();
        respond(ipc::status_reply(status));
    } else {
        respond(ipc::error_reply(fmt::format("unknown command '{}'", log::printable(*command))));
    }
}

}  // namespace facteur::master
