// One message's trip through qmgr: its envelope and status log, and what
// this attempt decided for each recipient still to do.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "libmail/delivery_protocol.hpp"
#include "libmail/queue.hpp"
#include "qmgr/queue_manager.hpp"

namespace facteur::qmgr {

struct Attempt {
    enum class Kind { lookup, mailbox, pipe, expand, done };
    size_t index = 0;  // recipient index in the envelope
    Kind kind = Kind::lookup;
    delivery::Target target;            // mailbox, pipe
    std::vector<std::string> expansion; // expand: the alias's final targets
    queue::RecipientStatus outcome;     // done (and after delivery)
};

struct QueueManager::Job {
    std::string id;
    std::string path;  // the queue file in active/
    queue::Envelope envelope;
    queue::StatusLog status;
    std::vector<Attempt> attempts;
    size_t lookups_outstanding = 0;
};

}  // namespace facteur::qmgr
