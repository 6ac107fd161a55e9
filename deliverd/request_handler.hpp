// deliverd's side of the qmgr -> deliverd socket: decodes a delivery request,
// runs every target on the worker pool, logs each outcome the Postfix way and
// answers with one result per target, in order.
#pragma once

#include <memory>
#include <set>

#include <sys/types.h>

#include "deliverd/delivery_agent.hpp"
#include "libmail/event.hpp"
#include "libmail/ipc.hpp"

namespace facteur::deliverd {

class RequestHandler {
public:
    RequestHandler(event::WorkerPool& pool, AgentSettings settings);
    RequestHandler(const RequestHandler&) = delete;
    RequestHandler& operator=(const RequestHandler&) = delete;

    // Applies to requests that arrive from now on (SIGHUP reload).
    void set_settings(AgentSettings settings);

    // Serves one request. A request that does not decode, or whose queue
    // file cannot be opened, gets an error reply (qmgr retries later);
    // otherwise the reply comes once every target has an outcome. Runs on
    // the loop thread; `respond` is called on the loop thread.
    void handle(const ipc::Frame& request, ipc::Server::Responder respond);

private:
    event::WorkerPool& pool_;
    std::shared_ptr<const AgentSettings> settings_;
};

// Who may ask for deliveries: root, deliverd's own uid and mail_owner's
// (qmgr), checked by SO_PEERCRED.
bool peer_allowed(const ipc::PeerCredentials& peer, const std::set<uid_t>& allowed);

}  // namespace facteur::deliverd
