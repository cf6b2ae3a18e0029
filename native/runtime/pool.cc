// Worker pool: threads are started lazily, once, and live for the life of the process (they are
// detached so a process exit never waits on them). Jobs are chunk ranges on a shared queue.
#include "runtime/pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

namespace runtime {

namespace {

struct Batch {
  const std::function<void(std::size_t, std::size_t)>* fn;
  std::atomic<std::size_t> remaining{0};
  std::mutex mu;
  std::condition_variable done;
};

struct Task {
  std::shared_ptr<Batch> batch;
  std::size_t begin, end;
};

class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // intentionally leaked: workers may outlive static dtors
    return *p;
  }

  void submit(std::deque<Task>& tasks) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& t : tasks) queue_.push_back(std::move(t));
    }
    cv_.notify_all();
  }

  // Runs queued tasks of `batch` on the calling thread until none are left in the queue.
  bool run_one_of(const std::shared_ptr<Batch>& batch) {
    Task t;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [&](const Task& q) { return q.batch == batch; });
      if (it == queue_.end()) return false;
      t = std::move(*it);
      queue_.erase(it);
    }
    execute(t);
    return true;
  }

  static void execute(Task& t) {
    (*t.batch->fn)(t.begin, t.end);
    if (t.batch->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(t.batch->mu);
      t.batch->done.notify_all();
    }
  }

 private:
  Pool() {
    const unsigned n = std::max(1u, hardware_threads() - 1);
    for (unsigned i = 0; i < n; i++) std::thread([this] { loop(); }).detach();
  }

  void loop() {
    for (;;) {
      Task t;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty(); });
        t = std::move(queue_.front());
        queue_.pop_front();
      }
      execute(t);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
};

}  // namespace

unsigned hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

void parallel_for(std::size_t n, unsigned threads,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::min<std::size_t>(n, 256))));
  if (threads == 1) {
    fn(0, n);
    return;
  }
  auto batch = std::make_shared<Batch>();
  batch->fn = &fn;
  // A few chunks per thread balances uneven pages without much queue traffic.
  const std::size_t parts = std::min<std::size_t>(n, static_cast<std::size_t>(threads) * 4);
  batch->remaining.store(parts, std::memory_order_relaxed);
  std::deque<Task> tasks;
  for (std::size_t i = 0; i < parts; i++) {
    tasks.push_back(Task{batch, n * i / parts, n * (i + 1) / parts});
  }
  Pool& pool = Pool::get();
  pool.submit(tasks);
  while (pool.run_one_of(batch)) {
  }
  std::unique_lock<std::mutex> lock(batch->mu);
  batch->done.wait(lock, [&] { return batch->remaining.load(std::memory_order_acquire) == 0; });
}

}  // namespace runtime
