//! Where an invocation finds room to run: a run's own limit, or the capacity a served project's runs
//! share. Pure state, no I/O: the scheduler asks for a slot before it hands an invocation to the
//! invoker and gives it back when the invocation ends.
//!
//! A served project has one limit for all its runs. Requests to its API Endpoints must never wait
//! behind background work (a fan-out of 10,000 items, a queue's batches, a timer's run), so:
//! - a reserve of the limit is kept for request runs: background runs never hold more than the limit
//!   less the reserve, and request runs may use every slot background work leaves;
//! - a block with a reservation (Refinery's `reserved_concurrency_count`, Braid's `concurrency_cap`)
//!   runs in slots of its own, that many at most, which nothing else takes: the shared limit is what is
//!   left once the reservations are taken out.
//!
//! Which waiting run gets a slot that frees is the engine's choice (request runs first); this says
//! only whether there is one.

/// Why there is no slot for an invocation of a block now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// No invocation of this run may start, whatever its block (the limit is reached).
    All,
    /// This block has all it may have running; other blocks may still start.
    Block,
}

/// Slots for the invocations of one run.
pub trait Room {
    /// Takes a slot for an invocation of `block`, or says why there is none.
    fn take(&mut self, block: usize) -> Result<(), Full>;
    /// Gives back the slot an invocation of `block` held.
    fn give_back(&mut self, block: usize);
}

/// A run that has the limit to itself (`braid run`, a run from the editor): at most `limit`
/// invocations at once, and a block with a cap at most that many. A cap reserves nothing here: the
/// run's other blocks may use every slot a capped block leaves.
#[derive(Clone, Debug, Default)]
pub struct RunRoom {
    limit: usize,
    running: usize,
    caps: Vec<Option<u32>>,
    per_block: Vec<u32>,
}

impl RunRoom {
    pub fn new(limit: usize, caps: Vec<Option<u32>>) -> Self {
        let blocks = caps.len();
        Self {
            limit: limit.max(1),
            running: 0,
            caps,
            per_block: vec![0; blocks],
        }
    }
}

impl Room for RunRoom {
    fn take(&mut self, block: usize) -> Result<(), Full> {
        if self.running >= self.limit {
            return Err(Full::All);
        }
        if self.caps[block].is_some_and(|cap| self.per_block[block] >= cap) {
            return Err(Full::Block);
        }
        self.running += 1;
        self.per_block[block] += 1;
        Ok(())
    }

    fn give_back(&mut self, block: usize) {
        self.running -= 1;
        self.per_block[block] -= 1;
    }
}

/// Whose work a run of a served project is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// A request to an API Endpoint: someone waits for the answer.
    Request,
    /// A timer's firing, a queue's batch, a topic's message: nobody waits on the line.
    Background,
}

/// The capacity a served project's runs share (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Capacity {
    /// Slots not reserved for a block.
    shared: u32,
    /// Of `shared`, how many background runs may never hold.
    reserve: u32,
    /// Shared slots held by request runs and by background runs.
    requests: u32,
    background: u32,
    /// Per block: its reserved slots, if it has any, and how many of them are held.
    reserved: Vec<Option<u32>>,
    held: Vec<u32>,
}

impl Capacity {
    /// `reservations` holds each block's reserved slots, in plan order. Reservations that leave no shared
    /// slot (validation reports them before serving starts) still leave one, so runs can't hang.
    pub fn new(limit: u32, reserve: u32, reservations: Vec<Option<u32>>) -> Self {
        let reserved_total: u32 = reservations.iter().flatten().sum();
        let shared = limit.saturating_sub(reserved_total).max(1);
        let blocks = reservations.len();
        Self {
            shared,
            reserve: reserve.min(shared - 1),
            requests: 0,
            background: 0,
            reserved: reservations,
            held: vec![0; blocks],
        }
    }

    /// The room of one run of `lane`.
    pub fn lane(&mut self, lane: Lane) -> LaneRoom<'_> {
        LaneRoom {
            capacity: self,
            lane,
        }
    }

    /// Shared slots held: (by request runs, by background runs).
    pub fn in_use(&self) -> (u32, u32) {
        (self.requests, self.background)
    }

    /// Whether a run of `lane` could start an invocation of a block without a reservation now.
    pub fn has_room(&self, lane: Lane) -> bool {
        let total = self.requests + self.background;
        total < self.shared
            && (lane == Lane::Request || self.background < self.shared - self.reserve)
    }
}

/// One run's view of a [`Capacity`]: its slots are counted in its lane.
#[derive(Debug)]
pub struct LaneRoom<'a> {
    capacity: &'a mut Capacity,
    lane: Lane,
}

impl Room for LaneRoom<'_> {
    fn take(&mut self, block: usize) -> Result<(), Full> {
        let capacity = &mut *self.capacity;
        if let Some(reserved) = capacity.reserved[block] {
            if capacity.held[block] >= reserved {
                return Err(Full::Block);
            }
            capacity.held[block] += 1;
            return Ok(());
        }
        if !capacity.has_room(self.lane) {
            // Blocks with reservations of their own may still start.
            return Err(if capacity.reserved.iter().any(Option::is_some) {
                Full::Block
            } else {
                Full::All
            });
        }
        match self.lane {
            Lane::Request => capacity.requests += 1,
            Lane::Background => capacity.background += 1,
        }
        Ok(())
    }

    fn give_back(&mut self, block: usize) {
        let capacity = &mut *self.capacity;
        if capacity.reserved[block].is_some() {
            capacity.held[block] -= 1;
            return;
        }
        match self.lane {
            Lane::Request => capacity.requests -= 1,
            Lane::Background => capacity.background -= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes slots for `block` in `lane` until there is none; returns how many it got.
    fn fill(capacity: &mut Capacity, lane: Lane, block: usize) -> u32 {
        let mut room = capacity.lane(lane);
        let mut got = 0;
        while room.take(block).is_ok() {
            got += 1;
        }
        got
    }

    #[test]
    fn background_work_never_takes_the_request_reserve() {
        let mut capacity = Capacity::new(100, 10, vec![None]);
        assert_eq!(fill(&mut capacity, Lane::Background, 0), 90);
        assert_eq!(capacity.lane(Lane::Background).take(0), Err(Full::All));
        assert_eq!(fill(&mut capacity, Lane::Request, 0), 10);
        assert_eq!(capacity.in_use(), (10, 90));
    }

    #[test]
    fn requests_use_what_background_work_leaves_and_background_work_waits_for_its_share() {
        let mut capacity = Capacity::new(100, 10, vec![None]);
        assert_eq!(fill(&mut capacity, Lane::Background, 0), 90);
        // Background work ends: its slots are free for requests too.
        for _ in 0..40 {
            capacity.lane(Lane::Background).give_back(0);
        }
        assert_eq!(fill(&mut capacity, Lane::Request, 0), 50);
        // The requests hold 50, so background work gets 50 back, not its 90.
        assert_eq!(fill(&mut capacity, Lane::Background, 0), 0);
        capacity.lane(Lane::Request).give_back(0);
        assert_eq!(fill(&mut capacity, Lane::Background, 0), 1);
        assert_eq!(capacity.in_use(), (49, 51));
    }

    #[test]
    fn a_reserved_block_runs_in_its_own_slots_only_and_nothing_else_takes_them() {
        // Block 1 keeps 5 slots: the others share 95, of which background work may hold 85.
        let mut capacity = Capacity::new(100, 10, vec![None, Some(5)]);
        assert_eq!(fill(&mut capacity, Lane::Background, 0), 85);
        assert_eq!(fill(&mut capacity, Lane::Request, 0), 10);
        assert_eq!(capacity.lane(Lane::Request).take(0), Err(Full::Block));
        // Everything shared is held, yet the reserved block gets its five, and no more.
        assert_eq!(fill(&mut capacity, Lane::Background, 1), 5);
        assert_eq!(capacity.lane(Lane::Request).take(1), Err(Full::Block));
        capacity.lane(Lane::Background).give_back(1);
        assert_eq!(fill(&mut capacity, Lane::Request, 1), 1);
        assert_eq!(capacity.in_use(), (10, 85));
    }

    #[test]
    fn reservations_and_reserve_never_leave_nothing_to_share() {
        let mut capacity = Capacity::new(10, 10, vec![None, Some(20)]);
        assert_eq!(fill(&mut capacity, Lane::Background, 0), 1);
        assert_eq!(fill(&mut capacity, Lane::Request, 0), 0);
    }

    #[test]
    fn a_run_of_its_own_caps_a_block_without_reserving_for_it() {
        let mut room = RunRoom::new(3, vec![None, Some(1)]);
        assert_eq!(room.take(1), Ok(()));
        assert_eq!(room.take(1), Err(Full::Block));
        assert_eq!((room.take(0), room.take(0)), (Ok(()), Ok(())));
        assert_eq!(room.take(0), Err(Full::All));
        room.give_back(1);
        assert_eq!(room.take(0), Ok(()));
    }
}
