//! The read path of the web UI and `/metrics`: one closure over the core
//! under the state lock (see `core::ui_view`, whose views are bounded),
//! answered once what it saw is durable, as every read.

use super::{Master, MasterError};
use crate::core::Core;

impl Master {
    /// Runs `view` on the core with the clock's monotonic time. `view`
    /// must be short: it holds the state lock.
    pub async fn view<T>(&self, view: impl FnOnce(&Core, u64) -> T) -> Result<T, MasterError> {
        let now_ms = self.clock.now_ms();
        self.read(|core| Ok(view(core, now_ms))).await
    }
}
