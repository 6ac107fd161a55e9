// event::WorkerPool: blocking work on threads, results back on the loop.
#include "libmail/event.hpp"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "libmail/event_internal.hpp"
#include "libmail/log.hpp"
#include "libmail/panic.hpp"

namespace facteur::event {
using detail::describe;
using detail::error_text;
using detail::guarded;
using detail::to_timeval;

WorkerPool::WorkerPool(Loop& loop, size_t threads) {
    eventfd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!eventfd_) panic("eventfd failed");
    completion_event_ = event_new(loop.base(), eventfd_.get(), EV_READ | EV_PERSIST, &WorkerPool::on_completion, this);
    if (completion_event_ == nullptr || event_add(completion_event_, nullptr) != 0) panic("event_new failed");
    if (threads == 0) threads = 1;
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        queue_.clear();
    }
    wake_.notify_all();
    for (std::thread& thread : threads_) thread.join();
    event_free(completion_event_);
}

void WorkerPool::enqueue(std::function<void()> job, std::function<void()> done) {
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(Task{std::move(job), std::move(done)});
        ++in_flight_;
    }
    wake_.notify_one();
}

size_t WorkerPool::pending() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
}

void WorkerPool::work() {
    for (;;) {
        Task task;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            task = std::move(queue_.front());
            queue_.pop_front();
        }
        bool succeeded = false;
        guarded("worker", [&] {
            task.job();
            succeeded = true;
        });
        {
            std::lock_guard lock(mutex_);
            // A job that threw has no result: its `done` is dropped (logged above).
            completed_.push_back(succeeded ? std::move(task.done) : std::function<void()>());
        }
        uint64_t one = 1;
        ssize_t ignored = ::write(eventfd_.get(), &one, sizeof one);
        (void)ignored;
    }
}

void WorkerPool::on_completion(int fd, short, void* self) {
    auto* pool = static_cast<WorkerPool*>(self);
    uint64_t count = 0;
    ssize_t ignored = ::read(fd, &count, sizeof count);
    (void)ignored;
    std::deque<std::function<void()>> ready;
    {
        std::lock_guard lock(pool->mutex_);
        ready.swap(pool->completed_);
        pool->in_flight_ -= ready.size();
    }
    std::weak_ptr<bool> alive = pool->alive_;
    for (auto& done : ready) {
        if (alive.expired()) return;  // A `done` destroyed the pool: drop the rest.
        if (done) guarded("worker completion", done);
    }
}

}  // namespace facteur::event
