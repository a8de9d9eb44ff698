package dev.kvq.tuner;

import java.util.Random;
import org.apache.commons.math3.random.MersenneTwister;
import org.moeaframework.core.PRNG;

/**
 * Gives each search its own random numbers although MOEA Framework draws all of them from one global {@link Random}
 * ({@link PRNG}). kvq installs this router there once, wrapping whatever was installed before: on a thread running a
 * search ({@link #withSeed}), draws come from that search's own Mersenne Twister seeded with the search's seed (the
 * generator MOEA Framework itself uses); everywhere else they go to the wrapped generator, unchanged. No search reseeds
 * anything shared, and concurrent searches never draw from one generator.
 */
final class SearchRandom extends Random {
    private static final ScopedValue<MersenneTwister> SEARCH = ScopedValue.newInstance();

    /** What PRNG held before; null only while {@link Random}'s constructor runs. */
    private final Random outside;

    private SearchRandom(Random outside) {
        this.outside = outside;
    }

    /** Runs {@code search} on this thread with MOEA Framework's draws coming from a generator seeded with {@code seed}. */
    static <T, X extends Throwable> T withSeed(long seed, ScopedValue.CallableOp<T, X> search) throws X {
        install();
        return ScopedValue.where(SEARCH, new MersenneTwister(seed)).call(search);
    }

    private static synchronized void install() {
        Random current = PRNG.getRandom();
        if (!(current instanceof SearchRandom)) {
            PRNG.setRandom(new SearchRandom(current));
        }
    }

    private static MersenneTwister search() {
        return SEARCH.isBound() ? SEARCH.get() : null;
    }

    @Override
    public synchronized void setSeed(long seed) {
        MersenneTwister s = search();
        if (s != null) {
            s.setSeed(seed);
        } else if (outside != null) {
            outside.setSeed(seed);
        }
    }

    @Override
    protected int next(int bits) {
        MersenneTwister s = search();
        return (s != null ? s.nextInt() : outside.nextInt()) >>> (32 - bits);
    }

    @Override
    public void nextBytes(byte[] bytes) {
        MersenneTwister s = search();
        if (s != null) {
            s.nextBytes(bytes);
        } else {
            outside.nextBytes(bytes);
        }
    }

    @Override
    public int nextInt() {
        MersenneTwister s = search();
        return s != null ? s.nextInt() : outside.nextInt();
    }

    @Override
    public int nextInt(int bound) {
        MersenneTwister s = search();
        return s != null ? s.nextInt(bound) : outside.nextInt(bound);
    }

    @Override
    public long nextLong() {
        MersenneTwister s = search();
        return s != null ? s.nextLong() : outside.nextLong();
    }

    @Override
    public boolean nextBoolean() {
        MersenneTwister s = search();
        return s != null ? s.nextBoolean() : outside.nextBoolean();
    }

    @Override
    public float nextFloat() {
        MersenneTwister s = search();
        return s != null ? s.nextFloat() : outside.nextFloat();
    }

    @Override
    public double nextDouble() {
        MersenneTwister s = search();
        return s != null ? s.nextDouble() : outside.nextDouble();
    }

    @Override
    public double nextGaussian() {
        MersenneTwister s = search();
        return s != null ? s.nextGaussian() : outside.nextGaussian();
    }
}
