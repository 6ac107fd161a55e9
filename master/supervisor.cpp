// Process supervision for master: fork/exec with inherited sockets at fixed
// descriptors, restart on exit, throttling, ordered shutdown.
#include "master/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "libmail/daemon.hpp"
#include "libmail/log.hpp"

extern char** environ;

namespace facteur::master {
namespace {

std::string describe_exit(int wait_status) {
    if (WIFEXITED(wait_status)) return fmt::format("status={}", WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status)) {
        int signo = WTERMSIG(wait_status);
        return fmt::format("signal={} ({})", signo, strsignal(signo));
    }
    return fmt::format("wait_status={}", wait_status);
}

int64_t seconds_since(Supervisor::Clock::time_point then) {
    return std::chrono::duration_cast<std::chrono::seconds>(Supervisor::Clock::now() - then).count();
}

}  // namespace

Supervisor::Supervisor(event::Loop& loop, config::Config config)
    : loop_(loop), config_(std::move(config)), stop_timer_(loop, [this] {
          // service_stop_timeout expired: the stragglers of this service get SIGKILL.
          if (stop_index_ >= 0 && stop_index_ < static_cast<int>(services_.size())) {
              Service& service = *services_[static_cast<size_t>(stop_index_)];
              if (!service.processes.empty()) {
                  log::warning("service={} did not stop within {}ms; sending SIGKILL", service.spec.name,
                               config_.duration("", "service_stop_timeout").count());
                  signal_service(service, SIGKILL);
              }
          }
      }) {
    for (ServiceSpec& spec : service_table(config_)) {
        auto service = std::make_unique<Service>();
        service->spec = std::move(spec);
        services_.push_back(std::move(service));
    }
}

Supervisor::~Supervisor() = default;

Status Supervisor::resolve_account(Service& service) {
    if (!system::running_as_root()) {
        service.account.reset();
        return {};
    }
    std::string user = config_.string(service.spec.owner_parameter);
    auto account = system::find_account(user);
    if (!account)
        return make_error(fmt::format("{} = {}: {} (create it with scripts/create-users, or set {})",
                                      service.spec.owner_parameter, user, account.error(), service.spec.owner_parameter));
    if (account->uid == 0)
        return make_error(fmt::format("{} = {}: daemons never run as root", service.spec.owner_parameter, user));
    service.account = *account;
    return {};
}

Status Supervisor::open_sockets(Service& service) {
    service.sockets.clear();
    for (const ListenerSpec& listener : service.spec.listeners) {
        Result<UniqueFd> socket = make_error("unknown listener kind");
        if (listener.kind == ListenerSpec::Kind::unix_stream) {
            Status parent = system::ensure_directory(system::parent_directory(listener.address), 0755);
            if (!parent) return make_error(fmt::format("{}: {}", listener.describe(), parent.error()));
            socket = event::listen_unix(listener.address, listener.mode);
        } else {
            socket = event::listen_tcp(listener.address, listener.port);
        }
        if (!socket)
            return make_error(fmt::format("service {}: cannot listen on {}: {}", service.spec.name, listener.describe(),
                                          socket.error()));
        service.sockets.push_back(std::move(socket).value());
        log::info("service={} listening on {}", service.spec.name, listener.describe());
    }
    return {};
}

Status Supervisor::prepare() {
    for (auto& service : services_) {
        if (!service->spec.enabled) continue;
        std::string program = config_.path("daemon_directory") + "/" + service->spec.program;
        if (access(program.c_str(), X_OK) != 0)
            return make_error(fmt::format("service {}: cannot run {}: {}", service->spec.name, program,
                                          system::errno_text(errno)));
        if (Status status = resolve_account(*service); !status) return status;
        if (Status status = open_sockets(*service); !status) return status;
    }
    return {};
}

void Supervisor::start_all() {
    for (auto& service : services_) {
        if (service->spec.enabled) start_processes(*service);
    }
}

void Supervisor::start_processes(Service& service) {
    if (stopping_ || service.throttled || !service.spec.enabled) return;
    int running = 0;
    for (const auto& [pid, process] : service.processes)
        if (!process.retiring) ++running;
    while (running < service.spec.processes) {
        auto pid = spawn(service);
        if (!pid) {
            log::error("service={} cannot start: {}", service.spec.name, pid.error());
            // Count it like a fast exit so a broken binary gets throttled.
            ++service.fast_exits;
            break;
        }
        service.processes[*pid] = Process{Clock::now(), false};
        log::info("service={} pid={} started", service.spec.name, *pid);
        ++running;
    }
}

Result<pid_t> Supervisor::spawn(Service& service) {
    // Everything the child needs is built before fork: after it, the child
    // only calls async-signal-safe functions.
    std::string program = config_.path("daemon_directory") + "/" + service.spec.program;
    std::string config_file = config_.file();
    std::vector<std::string> names;
    for (const ListenerSpec& listener : service.spec.listeners) names.push_back(listener.name);
    std::string names_joined;
    for (const std::string& name : names) names_joined += (names_joined.empty() ? "" : ",") + name;

    std::vector<std::string> environment;
    for (char** variable = environ; *variable != nullptr; ++variable) {
        std::string_view entry(*variable);
        if (entry.starts_with("FACTEUR_LISTEN_") || entry.starts_with("FACTEUR_SERVICE=") ||
            entry.starts_with("FACTEUR_CONFIG="))
            continue;
        environment.emplace_back(entry);
    }
    environment.push_back(fmt::format("{}={}", daemon::kListenFdsVariable, service.sockets.size()));
    environment.push_back(fmt::format("{}={}", daemon::kListenNamesVariable, names_joined));
    environment.push_back(fmt::format("{}={}", daemon::kServiceVariable, service.spec.name));
    if (!config_file.empty()) environment.push_back(fmt::format("{}={}", daemon::kConfigVariable, config_file));
    std::vector<char*> envp;
    for (std::string& entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);

    std::vector<std::string> arguments{service.spec.program};
    if (!config_file.empty()) {
        arguments.push_back("-c");
        arguments.push_back(config_file);
    }
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);

    std::vector<int> fds;
    for (const UniqueFd& socket : service.sockets) fds.push_back(socket.get());
    std::optional<system::Account> account = service.account;
    pid_t parent = getpid();
    UniqueFd stdin_file;
    if (!service.spec.stdin_file.empty()) {
        stdin_file = UniqueFd(open(service.spec.stdin_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (!stdin_file)
            log::error("service={}: cannot open {}: {}", service.spec.name, service.spec.stdin_file,
                       system::errno_text(errno));
    }
    const int stdin_fd = stdin_file.get();

    pid_t pid = fork();
    if (pid < 0) return make_error(fmt::format("fork: {}", system::errno_text(errno)));
    if (pid > 0) return pid;

    // Child. Standard input first (it may sit where a socket goes next).
    int null_fd = stdin_fd >= 0 ? stdin_fd : open("/dev/null", O_RDONLY);
    if (null_fd >= 0 && null_fd != STDIN_FILENO) dup2(null_fd, STDIN_FILENO);
    // Move the sockets above every target slot first, then down to 3, 4,
    // ...: a plain dup2 loop could overwrite a socket not yet moved.
    const int count = static_cast<int>(fds.size());
    const int high = daemon::kFirstInheritedFd + count + 64;
    for (int& fd : fds) {
        int moved = fcntl(fd, F_DUPFD, high);
        if (moved < 0) _exit(127);
        fd = moved;
    }
    for (int i = 0; i < count; ++i) {
        if (dup2(fds[static_cast<size_t>(i)], daemon::kFirstInheritedFd + i) < 0) _exit(127);
    }
    close_range(static_cast<unsigned>(daemon::kFirstInheritedFd + count), ~0U, 0);

    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int signo : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD}) signal(signo, SIG_DFL);
    // Ignored until the daemon installs its reload handler: a reload sent
    // while a fresh child is still starting must not kill it (SIG_IGN
    // survives execve).
    signal(SIGHUP, SIG_IGN);
    setsid();

    if (account) {
        if (!drop_privileges(*account)) _exit(126);
    }
    // A child never outlives master (no process left behind even on kill -9).
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(0);
    execve(program.c_str(), argv.data(), envp.data());
    _exit(127);
}

void Supervisor::signal_service(Service& service, int signo) {
    for (const auto& [pid, process] : service.processes) kill(pid, signo);
}

void Supervisor::reap() {
    for (;;) {
        int wait_status = 0;
        pid_t pid = waitpid(-1, &wait_status, WNOHANG);
        if (pid <= 0) break;
        for (auto& service : services_) {
            if (service->processes.count(pid) != 0) {
                on_exit(*service, pid, wait_status);
                break;
            }
        }
    }
    if (stopping_) stop_next_service();
}

void Supervisor::on_exit(Service& service, pid_t pid, int wait_status) {
    Process process = service.processes[pid];
    service.processes.erase(pid);
    auto lived = Clock::now() - process.started;
    auto lived_ms = std::chrono::duration_cast<std::chrono::milliseconds>(lived).count();
    if (stopping_ || process.retiring) {
        log::info("service={} pid={} exited {}", service.spec.name, pid, describe_exit(wait_status));
        if (!stopping_) start_processes(service);
        return;
    }
    bool fast = lived < config_.duration("", "service_fast_exit_time");
    service.fast_exits = fast ? service.fast_exits + 1 : 0;
    log::warning("service={} pid={} exited unexpectedly {} after {}ms", service.spec.name, pid,
                 describe_exit(wait_status), lived_ms);
    int64_t limit = config_.integer("", "service_fast_exit_limit");
    if (service.fast_exits >= limit) {
        auto pause = config_.duration("", "service_throttle_time");
        service.throttled = true;
        service.throttled_until = Clock::now() + pause;
        log::error("service={} throttled: {} processes exited within {}ms of start; pausing it for {}s "
                   "(other services keep running)",
                   service.spec.name, service.fast_exits, config_.duration("", "service_fast_exit_time").count(),
                   pause.count() / 1000);
        Service* target = &service;
        service.throttle_timer = std::make_unique<event::Timer>(loop_, [this, target] {
            target->throttled = false;
            target->fast_exits = 0;
            log::info("service={} throttle ended; starting it again", target->spec.name);
            start_processes(*target);
        });
        service.throttle_timer->start(pause);
        // Stop the service's other processes too: it is paused as a whole.
        for (auto& [other, entry] : service.processes) entry.retiring = true;
        signal_service(service, SIGTERM);
        return;
    }
    ++service.restarts;
    log::info("service={} restarting (restart #{})", service.spec.name, service.restarts);
    start_processes(service);
}

Status Supervisor::reload(config::Config config) {
    auto table = service_table(config);
    config_ = std::move(config);
    for (size_t i = 0; i < services_.size() && i < table.size(); ++i) {
        Service& service = *services_[i];
        ServiceSpec& next = table[i];
        bool sockets_changed = next.listeners != service.spec.listeners;
        bool was_enabled = service.spec.enabled;
        service.spec = std::move(next);
        if (!service.spec.enabled) {
            if (was_enabled) log::info("service={} disabled by reload; stopping it", service.spec.name);
            for (auto& [pid, process] : service.processes) process.retiring = true;
            signal_service(service, SIGTERM);
            service.sockets.clear();
            continue;
        }
        if (Status status = resolve_account(service); !status) return status;
        if (!was_enabled || sockets_changed) {
            if (Status status = open_sockets(service); !status) return status;
            // Old processes hold the old sockets: replace them.
            for (auto& [pid, process] : service.processes) process.retiring = true;
            signal_service(service, SIGTERM);
        } else {
            // Retire processes beyond the new count; tell the rest to reload.
            int keep = service.spec.processes;
            for (auto& [pid, process] : service.processes) {
                if (process.retiring) continue;
                if (keep > 0) {
                    --keep;
                    kill(pid, SIGHUP);
                } else {
                    process.retiring = true;
                    kill(pid, SIGTERM);
                }
            }
        }
        start_processes(service);
    }
    return {};
}

void Supervisor::stop(std::function<void()> done) {
    if (stopping_) return;
    stopping_ = true;
    stop_done_ = std::move(done);
    for (auto& service : services_) service->throttle_timer.reset();
    stop_index_ = static_cast<int>(services_.size());
    stop_next_service();
}

void Supervisor::stop_next_service() {
    // Stay on the current service until its processes are gone.
    if (stop_index_ >= 0 && stop_index_ < static_cast<int>(services_.size()) &&
        !services_[static_cast<size_t>(stop_index_)]->processes.empty())
        return;
    stop_timer_.cancel();
    while (--stop_index_ >= 0) {
        Service& service = *services_[static_cast<size_t>(stop_index_)];
        if (service.processes.empty()) continue;
        log::info("service={} stopping {} process(es)", service.spec.name, service.processes.size());
        signal_service(service, SIGTERM);
        stop_timer_.start(config_.duration("", "service_stop_timeout"));
        return;
    }
    if (stop_done_) {
        auto done = std::move(stop_done_);
        stop_done_ = nullptr;
        done();
    }
}

std::vector<ProcessStatus> Supervisor::status() const {
    std::vector<ProcessStatus> rows;
    for (const auto& service : services_) {
        if (!service->spec.enabled) {
            rows.push_back({service->spec.name, 0, "disabled", 0, service->restarts});
            continue;
        }
        if (service->throttled) {
            auto left = std::chrono::duration_cast<std::chrono::seconds>(service->throttled_until - Clock::now());
            rows.push_back({service->spec.name, 0, fmt::format("throttled ({}s left)", std::max<int64_t>(0, left.count())),
                            0, service->restarts});
            continue;
        }
        for (const auto& [pid, process] : service->processes) {
            rows.push_back({service->spec.name, pid, process.retiring || stopping_ ? "stopping" : "running",
                            seconds_since(process.started), service->restarts});
        }
        if (service->processes.empty()) rows.push_back({service->spec.name, 0, "starting", 0, service->restarts});
    }
    return rows;
}

}  // namespace facteur::master
