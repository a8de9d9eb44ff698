package dev.kvq.tests;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.codeUnits;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaCodeUnit;
import com.tngtech.archunit.lang.ArchCondition;
import com.tngtech.archunit.lang.ConditionEvents;
import com.tngtech.archunit.lang.SimpleConditionEvent;
import java.util.ArrayList;
import java.util.List;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The module rules of the design card, checked on the compiled classes of every kvq module on the class path. Every
 * rule fails when the classes it speaks of are missing ({@code allowEmptyShould(false)}), and
 * {@link #everyModuleIsImported} checks that each module's classes are there to be checked.
 */
class ArchitectureTest {
    private static final String[] API = {"dev.kvq", "dev.kvq.config", "dev.kvq.tensor", "dev.kvq.cache", "dev.kvq.spi",
        "dev.kvq.discovery"};
    private static JavaClasses kvq;

    @BeforeAll
    static void importClasses() {
        kvq = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("dev.kvq");
    }

    @Test
    void everyModuleIsImported() {
        for (String pkg : new String[] {"dev.kvq.spi", "dev.kvq.io.config", "dev.kvq.cache.quantized", "dev.kvq.generate",
            "dev.kvq.runtime.onnx", "dev.kvq.runtime.djl", "dev.kvq.backend.vanilla", "dev.kvq.backend.hqq",
            "dev.kvq.backend.quanto", "dev.kvq.eval", "dev.kvq.tuner", "dev.kvq.lib", "dev.kvq.serve", "dev.kvq.cli"}) {
            assertTrue(kvq.stream().map(JavaClass::getPackageName).anyMatch(pkg::equals), "no class of " + pkg
                    + " was imported: the rules below would not check it");
        }
    }

    @Test
    void apiDependsOnNoOtherKvqModuleNorAnyRuntimeOrThirdPartyLibrary() {
        String[] allowed = new String[API.length + 2];
        System.arraycopy(API, 0, allowed, 0, API.length);
        allowed[API.length] = "java..";
        allowed[API.length + 1] = "jdk.incubator.vector..";
        classes().that().resideInAnyPackage(API).should().onlyDependOnClassesThat().resideInAnyPackage(allowed)
                .allowEmptyShould(false).check(kvq);
        noClasses().that().resideInAnyPackage(API).should().dependOnClassesThat()
                .resideInAnyPackage("ai.onnxruntime..", "ai.djl..").allowEmptyShould(false).check(kvq);
    }

    @Test
    void backendsDependOnlyOnTheApi() {
        String[] allowed = new String[API.length + 3];
        System.arraycopy(API, 0, allowed, 0, API.length);
        allowed[API.length] = "java..";
        allowed[API.length + 1] = "jdk.incubator.vector..";
        allowed[API.length + 2] = "dev.kvq.backend..";
        classes().that().resideInAPackage("dev.kvq.backend..").should().onlyDependOnClassesThat()
                .resideInAnyPackage(allowed).allowEmptyShould(false).check(kvq);
        slices().matching("dev.kvq.backend.(*)..").should().notDependOnEachOther().allowEmptyShould(false).check(kvq);
    }

    /** Runtimes see caches through the KV cache contract and the decoder SPI, never a cache's internals. */
    @Test
    void runtimesDependOnNoBackendNorTheQuantizedCache() {
        noClasses().that().resideInAPackage("dev.kvq.runtime..").should().dependOnClassesThat()
                .resideInAnyPackage("dev.kvq.backend..", "dev.kvq.cache.quantized..").allowEmptyShould(false)
                .check(kvq);
    }

    /**
     * The Vector API is optional ({@code requires static}): only the SIMD kernel classes, named {@code *Simd} and
     * loaded only when the module is present, may touch it.
     */
    @Test
    void onlySimdKernelsTouchTheVectorApi() {
        noClasses().that().haveSimpleNameNotEndingWith("Simd").should().dependOnClassesThat()
                .resideInAPackage("jdk.incubator.vector..").allowEmptyShould(false).check(kvq);
        classes().that().haveSimpleNameEndingWith("Simd").should().bePackagePrivate().allowEmptyShould(false)
                .check(kvq);
    }

    /**
     * The library's door: everything public in {@code dev.kvq.lib} speaks only of its own types, the configuration
     * records and the JDK, so a program needs no other kvq type.
     */
    @Test
    void theLibraryApiShowsOnlyItsOwnConfigurationAndJdkTypes() {
        codeUnits().that().arePublic().and().areDeclaredInClassesThat().resideInAPackage("dev.kvq.lib")
                .should(new ArchCondition<JavaCodeUnit>("take and return only dev.kvq.lib, dev.kvq.config and JDK types") {
                    @Override
                    public void check(JavaCodeUnit unit, ConditionEvents events) {
                        List<JavaClass> types = new ArrayList<>(unit.getRawParameterTypes());
                        types.add(unit.getRawReturnType());
                        for (JavaClass t : types) {
                            JavaClass base = t.isArray() ? t.getBaseComponentType() : t;
                            String pkg = base.getPackageName();
                            boolean allowed = base.isPrimitive() || pkg.startsWith("java.") || pkg.equals("dev.kvq.lib")
                                    || pkg.equals("dev.kvq.config");
                            if (!allowed) {
                                events.add(SimpleConditionEvent.violated(unit, unit.getFullName() + " uses "
                                        + base.getName()));
                            }
                        }
                    }
                }).allowEmptyShould(false).check(kvq);
    }

    /**
     * The web server and metrics libraries stay inside kvq-serve, and there only in its HTTP layer: the batching engine
     * knows nothing of HTTP.
     */
    @Test
    void onlyTheServersHttpLayerUsesTheWebServer() {
        noClasses().that().resideOutsideOfPackage("dev.kvq.serve..").should().dependOnClassesThat()
                .resideInAnyPackage("io.helidon..", "io.micrometer..", "org.HdrHistogram..").allowEmptyShould(false)
                .check(kvq);
        noClasses().that().resideInAPackage("dev.kvq.serve").and().haveSimpleNameNotStartingWith("CompletionsApi")
                .and().doNotHaveSimpleName("KvqServer").should().dependOnClassesThat().resideInAPackage("io.helidon..")
                .allowEmptyShould(false).check(kvq);
    }

    @Test
    void noPackageCycles() {
        slices().matching("dev.kvq.(**)").should().beFreeOfCycles().allowEmptyShould(false).check(kvq);
        slices().matching("(dev.kvq)").should().beFreeOfCycles().allowEmptyShould(false).check(kvq);
    }

    @Test
    void onlyTheCommandWritesToStandardStreams() {
        noClasses().that().resideOutsideOfPackage("dev.kvq.cli..").should().accessField(System.class, "out")
                .orShould().accessField(System.class, "err").orShould().callMethod(Throwable.class, "printStackTrace")
                .allowEmptyShould(false).check(kvq);
    }

    @Test
    void noJavaUtilLogging() {
        noClasses().should().dependOnClassesThat().resideInAPackage("java.util.logging..").allowEmptyShould(false)
                .check(kvq);
    }
}
