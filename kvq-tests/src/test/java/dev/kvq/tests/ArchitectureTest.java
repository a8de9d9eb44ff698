package dev.kvq.tests;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The module rules of the design card, checked on the compiled classes of every kvq module on the class path. */
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
    void apiDependsOnNoOtherKvqModuleNorAnyRuntimeOrThirdPartyLibrary() {
        String[] allowed = new String[API.length + 2];
        System.arraycopy(API, 0, allowed, 0, API.length);
        allowed[API.length] = "java..";
        allowed[API.length + 1] = "jdk.incubator.vector..";
        classes().that().resideInAnyPackage(API).should().onlyDependOnClassesThat().resideInAnyPackage(allowed)
                .check(kvq);
        noClasses().that().resideInAnyPackage(API).should().dependOnClassesThat()
                .resideInAnyPackage("ai.onnxruntime..", "ai.djl..").check(kvq);
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
        slices().matching("dev.kvq.backend.(*)..").should().notDependOnEachOther().check(kvq);
    }

    @Test
    void runtimesDependOnNoBackend() {
        noClasses().that().resideInAPackage("dev.kvq.runtime..").should().dependOnClassesThat()
                .resideInAPackage("dev.kvq.backend..").allowEmptyShould(true).check(kvq);
    }

    @Test
    void noPackageCycles() {
        slices().matching("dev.kvq.(**)").should().beFreeOfCycles().check(kvq);
        slices().matching("(dev.kvq)").should().beFreeOfCycles().check(kvq);
    }

    @Test
    void onlyTheCommandWritesToStandardStreams() {
        noClasses().that().resideOutsideOfPackage("dev.kvq.cli..").should().accessField(System.class, "out")
                .orShould().accessField(System.class, "err").orShould().callMethod(Throwable.class, "printStackTrace")
                .check(kvq);
    }

    @Test
    void noJavaUtilLogging() {
        noClasses().should().dependOnClassesThat().resideInAPackage("java.util.logging..").check(kvq);
    }
}
