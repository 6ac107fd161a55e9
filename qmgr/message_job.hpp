// One message's trip through qmgr: its envelope and status log, and what
// this attempt decided for each recipient still to do.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libmail/delivery_protocol.hpp"
#include "libmail/queue.hpp"
#include "libmail/relay_protocol.hpp"
#include "qmgr/queue_manager.hpp"
#include "qmgr/transport_table.hpp"

namespace facteur::qmgr {

struct Attempt {
    enum class Kind { lookup, mailbox, pipe, expand, relay, done };
    size_t index = 0;  // recipient index in the envelope
    Kind kind = Kind::lookup;
    delivery::Target target;            // mailbox, pipe
    std::vector<std::string> expansion; // expand: the alias's final targets
    relay::Nexthop nexthop;             // relay: where relayd sends it
    queue::RecipientStatus outcome;     // done (and after delivery)
};

struct QueueManager::Job {
    std::string id;
    std::string path;  // the queue file in active/
    queue::Envelope envelope;
    queue::StatusLog status;
    std::vector<Attempt> attempts;
    size_t lookups_outstanding = 0;
    size_t calls_outstanding = 0;  // deliverd and relayd requests not answered yet
    size_t relay_calls = 0;        // of which to relayd
    // The transport table in force when the job was routed (a reload must
    // not change a route half-way).
    std::shared_ptr<const TransportTable> transports;
};

}  // namespace facteur::qmgr
