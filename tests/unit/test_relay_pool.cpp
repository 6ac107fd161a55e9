// qmgr's pool of relayd connections: one request in flight per connection
// (relayd answers in order and a request can take minutes), at most
// `limit` at once, the rest waiting; replies reach the right caller.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "qmgr/relay_pool.hpp"
#include "test_support.hpp"

using namespace facteur;

TEST_CASE("relay pool: concurrent calls get their own connections, up to the limit") {
    test::TempDir dir;
    event::Loop loop;
    auto socket = event::listen_unix(dir.file("relayd"), 0600);
    REQUIRE(socket.ok());
    // A slow relayd: holds every request until the test releases it.
    std::vector<std::pair<std::string, ipc::Server::Responder>> held;
    size_t max_held = 0;
    ipc::Server relayd(loop, std::move(socket).value(),
                       [&](const ipc::Frame& request, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                           held.emplace_back(std::string(request.get("queue_id").value_or("")), std::move(respond));
                           max_held = std::max(max_held, held.size());
                       });
    qmgr::RelayPool pool(loop, dir.file("relayd"), 2, std::chrono::seconds(30));
    std::map<std::string, std::string> answers;
    for (std::string id : {"A", "B", "C", "D"}) {
        pool.call(ipc::Frame().add("queue_id", id), [&answers, &loop, id](Result<ipc::Frame> reply) {
            REQUIRE(reply.ok());
            answers[id] = std::string(reply->get("answer").value_or(""));
            if (answers.size() == 4) loop.stop();
        });
    }
    CHECK(pool.busy() == 2);
    CHECK(pool.waiting() == 2);
    // Answer out of order: B first, then the others as they arrive.
    event::Timer answer(loop, [&] {
        if (held.empty()) return;
        size_t pick = held.size() > 1 && held[1].first == "B" ? 1 : 0;
        auto [id, respond] = std::move(held[pick]);
        held.erase(held.begin() + static_cast<long>(pick));
        respond(ipc::Frame().add("answer", "for " + id));
    });
    answer.start_repeating(std::chrono::milliseconds(20));
    CHECK(test::run_until_stopped(loop));
    CHECK(max_held == 2);  // never more than `limit` requests at relayd
    CHECK(answers == std::map<std::string, std::string>{{"A", "for A"}, {"B", "for B"}, {"C", "for C"}, {"D", "for D"}});
    CHECK(pool.busy() == 0);
    CHECK(pool.waiting() == 0);
}

TEST_CASE("relay pool: relayd not running fails each call, and the pool recovers") {
    test::TempDir dir;
    event::Loop loop;
    qmgr::RelayPool pool(loop, dir.file("relayd"), 1, std::chrono::seconds(5));
    std::vector<std::string> errors;
    for (int i = 0; i < 3; ++i) {
        pool.call(ipc::Frame().add("queue_id", "X"), [&](Result<ipc::Frame> reply) {
            REQUIRE_FALSE(reply.ok());
            errors.push_back(reply.error());
            if (errors.size() == 3) loop.stop();
        });
    }
    CHECK(test::run_until_stopped(loop));
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].find("No such file") != std::string::npos);
    CHECK(pool.busy() == 0);

    // relayd comes up: the same pool reaches it.
    auto socket = event::listen_unix(dir.file("relayd"), 0600);
    REQUIRE(socket.ok());
    ipc::Server relayd(loop, std::move(socket).value(),
                       [](const ipc::Frame&, const ipc::PeerCredentials&, ipc::Server::Responder respond) {
                           respond(ipc::ok_reply());
                       });
    bool answered = false;
    pool.call(ipc::Frame().add("queue_id", "Y"), [&](Result<ipc::Frame> reply) {
        answered = reply.ok();
        loop.stop();
    });
    CHECK(test::run_until_stopped(loop));
    CHECK(answered);
}
