// The supervisor: starts each service's processes with their sockets,
// restarts what dies, throttles services that keep dying at start, stops
// everything in order, and reloads (DESIGN §4).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libmail/config.hpp"
#include "libmail/event.hpp"
#include "libmail/master_control.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"
#include "master/services.hpp"

namespace facteur::master {

using master_control::ProcessStatus;

class Supervisor {
public:
    using Clock = std::chrono::steady_clock;

    Supervisor(event::Loop& loop, config::Config config);
    ~Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    // Resolves accounts and opens every enabled service's sockets; an error
    // here means master cannot start.
    Status prepare();
    void start_all();
    // Re-reads nothing itself: takes the new configuration, adjusts
    // processes/enabled/sockets, and sends SIGHUP to every child.
    Status reload(config::Config config);
    // Stops services in reverse start order: SIGTERM, wait, SIGKILL after
    // service_stop_timeout. `done` runs when no child is left.
    void stop(std::function<void()> done);
    bool stopping() const { return stopping_; }
    std::vector<ProcessStatus> status() const;

    // Called on SIGCHLD.
    void reap();

private:
    struct Process {
        Clock::time_point started;
        bool retiring = false;  // told to exit by us; do not restart or count
    };
    struct Service {
        ServiceSpec spec;
        std::optional<system::Account> account;
        std::vector<UniqueFd> sockets;
        std::map<pid_t, Process> processes;
        int fast_exits = 0;
        int restarts = 0;
        bool throttled = false;
        Clock::time_point throttled_until;
        std::unique_ptr<event::Timer> throttle_timer;
    };

    Status open_sockets(Service& service);
    Status resolve_account(Service& service);
    void start_processes(Service& service);
    Result<pid_t> spawn(Service& service);
    void on_exit(Service& service, pid_t pid, int wait_status);
    void stop_next_service();
    void signal_service(Service& service, int signo);

    event::Loop& loop_;
    config::Config config_;
    std::vector<std::unique_ptr<Service>> services_;
    bool stopping_ = false;
    int stop_index_ = -1;
    std::function<void()> stop_done_;
    event::Timer stop_timer_;
};

}  // namespace facteur::master
