/* Monotonic and wall clocks in seconds, as doubles: the pool compares ages
 * and deadlines, which must not jump when the system time is set. */
#ifndef SCOPED_CLOCK_H
#define SCOPED_CLOCK_H

double sc_monotonic(void);

#endif
